-- Contact times by hand: every signal counted once per (customer, dimension, value) in one
-- scan of the lines and one of the events (GROUPING SETS), shrunk toward the RFM segment's
-- shares with k = 5 pseudo-observations; the best value per customer by QUALIFY, pivoted by a
-- grouping. Same output as segmentum.campaigns.timing.contact_times.
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
fine AS MATERIALIZED (
  SELECT customer_id, hour_band, weekday, device, channel, COUNT(*)::DOUBLE AS n
  FROM banded GROUP BY ALL),
grouped AS (
  SELECT customer_id, hour_band, weekday, device, channel,
         GROUPING(hour_band, weekday, device, channel) AS g, SUM(n) AS n
  FROM fine
  GROUP BY GROUPING SETS ((customer_id, hour_band), (customer_id, weekday),
                          (customer_id, device), (customer_id, channel))),
counts AS MATERIALIZED (
  SELECT c.customer_id, s._seg,
    CASE g WHEN 7 THEN 'hour_band' WHEN 11 THEN 'weekday' WHEN 13 THEN 'device' ELSE 'channel' END AS dim,
    COALESCE(hour_band, weekday, device, channel) AS value, n
  FROM grouped c JOIN seg s USING (customer_id)
  WHERE COALESCE(hour_band, weekday, device, channel) IS NOT NULL),
segp AS (
  SELECT dim, _seg, value, SUM(n) / SUM(SUM(n)) OVER (PARTITION BY dim, _seg) AS p
  FROM counts GROUP BY dim, _seg, value),
tot AS (SELECT customer_id, dim, SUM(n) AS tot FROM counts GROUP BY customer_id, dim),
-- The best value a customer never showed is their segment's top one (any other scores no
-- more): candidates are the customer's own values and that one, not every value of the segment.
top AS (SELECT dim, _seg, value, p FROM segp
        QUALIFY ROW_NUMBER() OVER (PARTITION BY dim, _seg ORDER BY p DESC, value) = 1),
cand AS (
  SELECT c.customer_id, c.dim, c.value, c.n, sp.p
  FROM counts c JOIN segp sp USING (dim, _seg, value)
  UNION ALL
  SELECT s.customer_id, top.dim, top.value, 0.0 AS n, top.p
  FROM seg s JOIN top USING (_seg)
  WHERE NOT EXISTS (SELECT 1 FROM counts c WHERE c.customer_id = s.customer_id
                    AND c.dim = top.dim AND c.value = top.value)),
best AS (
  SELECT c.customer_id, c.dim,
         ARG_MIN(c.value, {'post': -(c.n + 5.0 * c.p), 'value': c.value}) AS value,
         MAX((c.n + 5.0 * c.p) / (COALESCE(t.tot, 0) + 5.0)) AS post
  FROM cand c LEFT JOIN tot t USING (customer_id, dim)
  GROUP BY c.customer_id, c.dim)
SELECT s.customer_id,
  ANY_VALUE(value) FILTER (WHERE dim = 'hour_band') AS best_hour_band,
  ANY_VALUE(post) FILTER (WHERE dim = 'hour_band') AS hour_band_confidence,
  ANY_VALUE(value) FILTER (WHERE dim = 'weekday') AS best_weekday,
  ANY_VALUE(post) FILTER (WHERE dim = 'weekday') AS weekday_confidence,
  ANY_VALUE(value) FILTER (WHERE dim = 'device') AS best_device,
  ANY_VALUE(post) FILTER (WHERE dim = 'device') AS device_confidence,
  ANY_VALUE(value) FILTER (WHERE dim = 'channel') AS best_channel,
  ANY_VALUE(post) FILTER (WHERE dim = 'channel') AS channel_confidence,
  DATE '{as_of}' AS as_of
FROM seg s LEFT JOIN best b USING (customer_id)
GROUP BY s.customer_id;
