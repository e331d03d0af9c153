-- Contact times by hand: every customer's signals counted in one row, one column per
-- dimension and value (one grouping of the lines and events with FILTER counts), the RFM
-- segment's shares summed per column, the posterior numerator n + k x share (k = 5) per
-- column and the best value by GREATEST, ties to the first value in order. The values are
-- written out for the demo data (5 hour bands, 7 weekdays, its 3 devices, 2 channels): the
-- tool finds the devices in the data first. Same output as
-- segmentum.campaigns.timing.contact_times.
CREATE OR REPLACE TABLE limit_contact_times AS
WITH seg AS MATERIALIZED (
  SELECT i.customer_id, COALESCE(c.rfm_segment, '(none)') AS _seg
  FROM (SELECT customer_id FROM customer_features WHERE as_of = DATE '{as_of}'
        UNION SELECT customer_id FROM customers) i
  LEFT JOIN (SELECT customer_id, rfm_segment FROM customer_classes
             WHERE as_of = DATE '{as_of}') c USING (customer_id)),
gone AS (SELECT DISTINCT customer_id, original_invoice_id AS invoice_id
         FROM return_links WHERE invoice_cancelled),
sig AS (
  SELECT customer_id, HOUR(timestamp) AS h, ISODOW(timestamp) AS dw, device, NULL::VARCHAR AS channel
  FROM transactions t
  WHERE customer_id IS NOT NULL AND quantity > 0 AND timestamp < TIMESTAMP '{as_of}'
    AND NOT EXISTS (SELECT 1 FROM gone g
                    WHERE g.customer_id = t.customer_id AND g.invoice_id = t.invoice_id)
  UNION ALL
  SELECT customer_id, HOUR(timestamp), ISODOW(timestamp), device,
         CASE WHEN event_type LIKE 'email%' THEN 'email' ELSE 'push' END
  FROM events
  WHERE customer_id IS NOT NULL AND timestamp < TIMESTAMP '{as_of}'
    AND event_type IN ('email_open', 'email_click', 'push_open', 'push_click')),
banded AS (
  SELECT customer_id,
    CASE WHEN h < 6 THEN 'night' WHEN h < 12 THEN 'morning' WHEN h < 16 THEN 'afternoon'
         WHEN h < 20 THEN 'evening' ELSE 'late' END AS hour_band,
    ['mon','tue','wed','thu','fri','sat','sun'][dw] AS weekday, device, channel
  FROM sig),
per AS (
  SELECT customer_id,
    COUNT(*) FILTER (WHERE hour_band = 'afternoon')::DOUBLE AS hour_band_afternoon,
    COUNT(*) FILTER (WHERE hour_band = 'evening')::DOUBLE AS hour_band_evening,
    COUNT(*) FILTER (WHERE hour_band = 'late')::DOUBLE AS hour_band_late,
    COUNT(*) FILTER (WHERE hour_band = 'morning')::DOUBLE AS hour_band_morning,
    COUNT(*) FILTER (WHERE hour_band = 'night')::DOUBLE AS hour_band_night,
    COUNT(*) FILTER (WHERE weekday = 'fri')::DOUBLE AS weekday_fri,
    COUNT(*) FILTER (WHERE weekday = 'mon')::DOUBLE AS weekday_mon,
    COUNT(*) FILTER (WHERE weekday = 'sat')::DOUBLE AS weekday_sat,
    COUNT(*) FILTER (WHERE weekday = 'sun')::DOUBLE AS weekday_sun,
    COUNT(*) FILTER (WHERE weekday = 'thu')::DOUBLE AS weekday_thu,
    COUNT(*) FILTER (WHERE weekday = 'tue')::DOUBLE AS weekday_tue,
    COUNT(*) FILTER (WHERE weekday = 'wed')::DOUBLE AS weekday_wed,
    COUNT(*) FILTER (WHERE device = 'desktop')::DOUBLE AS device_desktop,
    COUNT(*) FILTER (WHERE device = 'mobile')::DOUBLE AS device_mobile,
    COUNT(*) FILTER (WHERE device = 'tablet')::DOUBLE AS device_tablet,
    COUNT(*) FILTER (WHERE channel = 'email')::DOUBLE AS channel_email,
    COUNT(*) FILTER (WHERE channel = 'push')::DOUBLE AS channel_push
  FROM banded GROUP BY customer_id),
j AS MATERIALIZED (
  SELECT s.customer_id, s._seg,
    COALESCE(p.hour_band_afternoon, 0) AS hour_band_afternoon,
    COALESCE(p.hour_band_evening, 0) AS hour_band_evening,
    COALESCE(p.hour_band_late, 0) AS hour_band_late,
    COALESCE(p.hour_band_morning, 0) AS hour_band_morning,
    COALESCE(p.hour_band_night, 0) AS hour_band_night,
    COALESCE(p.weekday_fri, 0) AS weekday_fri,
    COALESCE(p.weekday_mon, 0) AS weekday_mon,
    COALESCE(p.weekday_sat, 0) AS weekday_sat,
    COALESCE(p.weekday_sun, 0) AS weekday_sun,
    COALESCE(p.weekday_thu, 0) AS weekday_thu,
    COALESCE(p.weekday_tue, 0) AS weekday_tue,
    COALESCE(p.weekday_wed, 0) AS weekday_wed,
    COALESCE(p.device_desktop, 0) AS device_desktop,
    COALESCE(p.device_mobile, 0) AS device_mobile,
    COALESCE(p.device_tablet, 0) AS device_tablet,
    COALESCE(p.channel_email, 0) AS channel_email,
    COALESCE(p.channel_push, 0) AS channel_push
  FROM seg s LEFT JOIN per p USING (customer_id)),
segsum AS (
  SELECT _seg,
    SUM(hour_band_afternoon) AS s_hour_band_afternoon,
    SUM(hour_band_evening) AS s_hour_band_evening,
    SUM(hour_band_late) AS s_hour_band_late,
    SUM(hour_band_morning) AS s_hour_band_morning,
    SUM(hour_band_night) AS s_hour_band_night,
    SUM(weekday_fri) AS s_weekday_fri,
    SUM(weekday_mon) AS s_weekday_mon,
    SUM(weekday_sat) AS s_weekday_sat,
    SUM(weekday_sun) AS s_weekday_sun,
    SUM(weekday_thu) AS s_weekday_thu,
    SUM(weekday_tue) AS s_weekday_tue,
    SUM(weekday_wed) AS s_weekday_wed,
    SUM(device_desktop) AS s_device_desktop,
    SUM(device_mobile) AS s_device_mobile,
    SUM(device_tablet) AS s_device_tablet,
    SUM(channel_email) AS s_channel_email,
    SUM(channel_push) AS s_channel_push
  FROM j GROUP BY _seg),
shares AS (
  SELECT _seg,
    CASE WHEN s_hour_band_afternoon + s_hour_band_evening + s_hour_band_late + s_hour_band_morning + s_hour_band_night > 0 THEN s_hour_band_afternoon / (s_hour_band_afternoon + s_hour_band_evening + s_hour_band_late + s_hour_band_morning + s_hour_band_night) END AS p_hour_band_afternoon,
    CASE WHEN s_hour_band_afternoon + s_hour_band_evening + s_hour_band_late + s_hour_band_morning + s_hour_band_night > 0 THEN s_hour_band_evening / (s_hour_band_afternoon + s_hour_band_evening + s_hour_band_late + s_hour_band_morning + s_hour_band_night) END AS p_hour_band_evening,
    CASE WHEN s_hour_band_afternoon + s_hour_band_evening + s_hour_band_late + s_hour_band_morning + s_hour_band_night > 0 THEN s_hour_band_late / (s_hour_band_afternoon + s_hour_band_evening + s_hour_band_late + s_hour_band_morning + s_hour_band_night) END AS p_hour_band_late,
    CASE WHEN s_hour_band_afternoon + s_hour_band_evening + s_hour_band_late + s_hour_band_morning + s_hour_band_night > 0 THEN s_hour_band_morning / (s_hour_band_afternoon + s_hour_band_evening + s_hour_band_late + s_hour_band_morning + s_hour_band_night) END AS p_hour_band_morning,
    CASE WHEN s_hour_band_afternoon + s_hour_band_evening + s_hour_band_late + s_hour_band_morning + s_hour_band_night > 0 THEN s_hour_band_night / (s_hour_band_afternoon + s_hour_band_evening + s_hour_band_late + s_hour_band_morning + s_hour_band_night) END AS p_hour_band_night,
    CASE WHEN s_weekday_fri + s_weekday_mon + s_weekday_sat + s_weekday_sun + s_weekday_thu + s_weekday_tue + s_weekday_wed > 0 THEN s_weekday_fri / (s_weekday_fri + s_weekday_mon + s_weekday_sat + s_weekday_sun + s_weekday_thu + s_weekday_tue + s_weekday_wed) END AS p_weekday_fri,
    CASE WHEN s_weekday_fri + s_weekday_mon + s_weekday_sat + s_weekday_sun + s_weekday_thu + s_weekday_tue + s_weekday_wed > 0 THEN s_weekday_mon / (s_weekday_fri + s_weekday_mon + s_weekday_sat + s_weekday_sun + s_weekday_thu + s_weekday_tue + s_weekday_wed) END AS p_weekday_mon,
    CASE WHEN s_weekday_fri + s_weekday_mon + s_weekday_sat + s_weekday_sun + s_weekday_thu + s_weekday_tue + s_weekday_wed > 0 THEN s_weekday_sat / (s_weekday_fri + s_weekday_mon + s_weekday_sat + s_weekday_sun + s_weekday_thu + s_weekday_tue + s_weekday_wed) END AS p_weekday_sat,
    CASE WHEN s_weekday_fri + s_weekday_mon + s_weekday_sat + s_weekday_sun + s_weekday_thu + s_weekday_tue + s_weekday_wed > 0 THEN s_weekday_sun / (s_weekday_fri + s_weekday_mon + s_weekday_sat + s_weekday_sun + s_weekday_thu + s_weekday_tue + s_weekday_wed) END AS p_weekday_sun,
    CASE WHEN s_weekday_fri + s_weekday_mon + s_weekday_sat + s_weekday_sun + s_weekday_thu + s_weekday_tue + s_weekday_wed > 0 THEN s_weekday_thu / (s_weekday_fri + s_weekday_mon + s_weekday_sat + s_weekday_sun + s_weekday_thu + s_weekday_tue + s_weekday_wed) END AS p_weekday_thu,
    CASE WHEN s_weekday_fri + s_weekday_mon + s_weekday_sat + s_weekday_sun + s_weekday_thu + s_weekday_tue + s_weekday_wed > 0 THEN s_weekday_tue / (s_weekday_fri + s_weekday_mon + s_weekday_sat + s_weekday_sun + s_weekday_thu + s_weekday_tue + s_weekday_wed) END AS p_weekday_tue,
    CASE WHEN s_weekday_fri + s_weekday_mon + s_weekday_sat + s_weekday_sun + s_weekday_thu + s_weekday_tue + s_weekday_wed > 0 THEN s_weekday_wed / (s_weekday_fri + s_weekday_mon + s_weekday_sat + s_weekday_sun + s_weekday_thu + s_weekday_tue + s_weekday_wed) END AS p_weekday_wed,
    CASE WHEN s_device_desktop + s_device_mobile + s_device_tablet > 0 THEN s_device_desktop / (s_device_desktop + s_device_mobile + s_device_tablet) END AS p_device_desktop,
    CASE WHEN s_device_desktop + s_device_mobile + s_device_tablet > 0 THEN s_device_mobile / (s_device_desktop + s_device_mobile + s_device_tablet) END AS p_device_mobile,
    CASE WHEN s_device_desktop + s_device_mobile + s_device_tablet > 0 THEN s_device_tablet / (s_device_desktop + s_device_mobile + s_device_tablet) END AS p_device_tablet,
    CASE WHEN s_channel_email + s_channel_push > 0 THEN s_channel_email / (s_channel_email + s_channel_push) END AS p_channel_email,
    CASE WHEN s_channel_email + s_channel_push > 0 THEN s_channel_push / (s_channel_email + s_channel_push) END AS p_channel_push
  FROM segsum),
x AS (
  SELECT j.customer_id,
    j.hour_band_afternoon + 5.0 * sh.p_hour_band_afternoon AS x_hour_band_afternoon,
    j.hour_band_evening + 5.0 * sh.p_hour_band_evening AS x_hour_band_evening,
    j.hour_band_late + 5.0 * sh.p_hour_band_late AS x_hour_band_late,
    j.hour_band_morning + 5.0 * sh.p_hour_band_morning AS x_hour_band_morning,
    j.hour_band_night + 5.0 * sh.p_hour_band_night AS x_hour_band_night,
    j.hour_band_afternoon + j.hour_band_evening + j.hour_band_late + j.hour_band_morning + j.hour_band_night AS t_hour_band,
    j.weekday_fri + 5.0 * sh.p_weekday_fri AS x_weekday_fri,
    j.weekday_mon + 5.0 * sh.p_weekday_mon AS x_weekday_mon,
    j.weekday_sat + 5.0 * sh.p_weekday_sat AS x_weekday_sat,
    j.weekday_sun + 5.0 * sh.p_weekday_sun AS x_weekday_sun,
    j.weekday_thu + 5.0 * sh.p_weekday_thu AS x_weekday_thu,
    j.weekday_tue + 5.0 * sh.p_weekday_tue AS x_weekday_tue,
    j.weekday_wed + 5.0 * sh.p_weekday_wed AS x_weekday_wed,
    j.weekday_fri + j.weekday_mon + j.weekday_sat + j.weekday_sun + j.weekday_thu + j.weekday_tue + j.weekday_wed AS t_weekday,
    j.device_desktop + 5.0 * sh.p_device_desktop AS x_device_desktop,
    j.device_mobile + 5.0 * sh.p_device_mobile AS x_device_mobile,
    j.device_tablet + 5.0 * sh.p_device_tablet AS x_device_tablet,
    j.device_desktop + j.device_mobile + j.device_tablet AS t_device,
    j.channel_email + 5.0 * sh.p_channel_email AS x_channel_email,
    j.channel_push + 5.0 * sh.p_channel_push AS x_channel_push,
    j.channel_email + j.channel_push AS t_channel
  FROM j JOIN shares sh USING (_seg)),
m AS (
  SELECT *,
    GREATEST(x_hour_band_afternoon, x_hour_band_evening, x_hour_band_late, x_hour_band_morning, x_hour_band_night) AS m_hour_band,
    GREATEST(x_weekday_fri, x_weekday_mon, x_weekday_sat, x_weekday_sun, x_weekday_thu, x_weekday_tue, x_weekday_wed) AS m_weekday,
    GREATEST(x_device_desktop, x_device_mobile, x_device_tablet) AS m_device,
    GREATEST(x_channel_email, x_channel_push) AS m_channel
  FROM x)
SELECT customer_id,
  CASE WHEN x_hour_band_afternoon = m_hour_band THEN 'afternoon' WHEN x_hour_band_evening = m_hour_band THEN 'evening' WHEN x_hour_band_late = m_hour_band THEN 'late' WHEN x_hour_band_morning = m_hour_band THEN 'morning' WHEN x_hour_band_night = m_hour_band THEN 'night' END AS best_hour_band,
  m_hour_band / (t_hour_band + 5.0) AS hour_band_confidence,
  CASE WHEN x_weekday_fri = m_weekday THEN 'fri' WHEN x_weekday_mon = m_weekday THEN 'mon' WHEN x_weekday_sat = m_weekday THEN 'sat' WHEN x_weekday_sun = m_weekday THEN 'sun' WHEN x_weekday_thu = m_weekday THEN 'thu' WHEN x_weekday_tue = m_weekday THEN 'tue' WHEN x_weekday_wed = m_weekday THEN 'wed' END AS best_weekday,
  m_weekday / (t_weekday + 5.0) AS weekday_confidence,
  CASE WHEN x_device_desktop = m_device THEN 'desktop' WHEN x_device_mobile = m_device THEN 'mobile' WHEN x_device_tablet = m_device THEN 'tablet' END AS best_device,
  m_device / (t_device + 5.0) AS device_confidence,
  CASE WHEN x_channel_email = m_channel THEN 'email' WHEN x_channel_push = m_channel THEN 'push' END AS best_channel,
  m_channel / (t_channel + 5.0) AS channel_confidence,
  DATE '{as_of}' AS as_of
FROM m;
