CREATE OR REPLACE TABLE raw_features AS
-- Net purchases, as the pipeline counts them: lines of an order its linked returns cancel in
-- full are left out, and so is a line whose units all came back; a line partly returned keeps
-- what was kept. Return lines stay (they are the returns).
WITH gone AS (SELECT DISTINCT customer_id, original_invoice_id AS invoice_id, TRUE AS g
              FROM return_links WHERE invoice_cancelled),
back AS (SELECT original_invoice_id AS invoice_id, original_line AS line,
                SUM(quantity) AS rq, SUM(amount) AS ra FROM return_links GROUP BY 1, 2),
l AS NOT MATERIALIZED (
  SELECT t.customer_id, t.invoice_id, t.product_id, t.category, t.sales_channel, t.device,
         CASE WHEN t.quantity > 0 THEN t.quantity + COALESCE(b.rq, 0) ELSE t.quantity END AS quantity,
         CASE WHEN t.quantity > 0 THEN GREATEST(t.amount + COALESCE(b.ra, 0), 0) ELSE t.amount END AS amount,
         t.promo_code, t.discount, t.timestamp, CAST(t.timestamp AS DATE) AS day
  FROM transactions t
  LEFT JOIN back b ON b.invoice_id = t.invoice_id AND b.line = t.line
  LEFT JOIN gone c ON c.customer_id = t.customer_id AND c.invoice_id = t.invoice_id
  WHERE t.customer_id IS NOT NULL AND t.timestamp < TIMESTAMP '{as_of}'
    AND NOT (t.quantity > 0 AND (COALESCE(c.g, FALSE) OR t.quantity + COALESCE(b.rq, 0) <= 1e-6))),
base AS (
  SELECT customer_id,
    SUM(amount) AS monetary,
    SUM(amount) FILTER (WHERE quantity > 0) AS gross,
    -SUM(amount) FILTER (WHERE quantity < 0) AS returned,
    SUM(quantity) FILTER (WHERE quantity > 0) AS items,
    MIN(day) FILTER (WHERE quantity > 0) AS first_purchase,
    MAX(day) FILTER (WHERE quantity > 0) AS last_purchase,
    SUM(amount) FILTER (WHERE quantity > 0 AND (promo_code IS NOT NULL OR COALESCE(discount, 0) > 0)) AS promo,
    COALESCE(SUM(amount) FILTER (WHERE day >= DATE '{as_of}' - 90), 0) AS l90,
    COALESCE(SUM(amount) FILTER (WHERE day >= DATE '{as_of}' - 180 AND day < DATE '{as_of}' - 90), 0) AS p90
  FROM l GROUP BY 1),
-- Each COUNT(DISTINCT) in its own grouping: together in one they take longer than apart.
freq AS (SELECT customer_id, COUNT(DISTINCT invoice_id) AS frequency FROM l WHERE quantity > 0 GROUP BY 1),
prods AS (SELECT customer_id, COUNT(DISTINCT product_id) AS distinct_products FROM l WHERE quantity > 0 GROUP BY 1),
days AS MATERIALIZED (SELECT customer_id, day, SUM(amount) AS v FROM l WHERE quantity > 0 GROUP BY 1, 2),
btyd AS (
  SELECT customer_id, COUNT(*) - 1 AS x,
         DATE_DIFF('day', MIN(day), MAX(day)) / 7.0 AS t_x,
         DATE_DIFF('day', MIN(day), DATE '{as_of}' - 1) / 7.0 AS T,
         (SUM(v) - ARG_MIN(v, day)) / NULLIF(COUNT(*) - 1, 0) AS monetary_value
  FROM days GROUP BY 1),
gaps AS (
  SELECT customer_id, AVG(gap) AS interpurchase_mean, STDDEV_POP(gap) AS interpurchase_std
  FROM (SELECT customer_id, DATE_DIFF('day', LAG(day) OVER (PARTITION BY customer_id ORDER BY day), day) AS gap FROM days)
  WHERE gap IS NOT NULL GROUP BY 1),
slots AS MATERIALIZED (
  SELECT customer_id, HOUR(timestamp) AS h, ISODOW(timestamp) AS dw, COUNT(*) AS n
  FROM l WHERE quantity > 0 GROUP BY 1, 2, 3),
band AS (
  SELECT customer_id, b AS preferred_hour_band FROM (
    SELECT customer_id, CASE WHEN h < 6 THEN 'night' WHEN h < 12 THEN 'morning' WHEN h < 16 THEN 'afternoon'
                             WHEN h < 20 THEN 'evening' ELSE 'late' END AS b, SUM(n) AS n
    FROM slots GROUP BY 1, 2)
  QUALIFY ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY n DESC, b) = 1),
wday AS (
  SELECT customer_id, d AS preferred_weekday FROM (
    SELECT customer_id, ['mon','tue','wed','thu','fri','sat','sun'][dw] AS d, SUM(n) AS n FROM slots GROUP BY 1, 2)
  QUALIFY ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY n DESC, d) = 1),
ways AS MATERIALIZED (
  SELECT customer_id, sales_channel, device, COUNT(*) AS n FROM l WHERE quantity > 0 GROUP BY 1, 2, 3),
chan AS (
  SELECT customer_id, sales_channel AS preferred_channel FROM (
    SELECT customer_id, sales_channel, SUM(n) AS n FROM ways WHERE sales_channel IS NOT NULL GROUP BY 1, 2)
  QUALIFY ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY n DESC, sales_channel) = 1),
dev AS (
  SELECT customer_id, device AS preferred_device FROM (
    SELECT customer_id, device, SUM(n) AS n FROM ways WHERE device IS NOT NULL GROUP BY 1, 2)
  QUALIFY ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY n DESC, device) = 1),
cat AS (
  SELECT customer_id, category AS top_category, v / SUM(v) OVER (PARTITION BY customer_id) AS top_category_share
  FROM (SELECT customer_id, category, SUM(amount) AS v FROM l WHERE quantity > 0 AND category IS NOT NULL GROUP BY 1, 2)
  QUALIFY ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY v DESC, category) = 1)
SELECT b.customer_id, f.frequency, b.monetary,
  DATE_DIFF('day', b.last_purchase, DATE '{as_of}' - 1) AS recency_days,
  DATE_DIFF('day', b.first_purchase, DATE '{as_of}' - 1) AS tenure_days,
  b.first_purchase, b.last_purchase,
  b.monetary / f.frequency AS avg_order_value, b.items / f.frequency AS items_per_order,
  CASE WHEN b.gross > 0 THEN COALESCE(b.returned, 0) / b.gross END AS return_rate,
  CASE WHEN b.gross > 0 THEN COALESCE(b.promo, 0) / b.gross END AS promo_share,
  COALESCE(p.distinct_products, 0) AS distinct_products, b.l90 AS spend_last_90, b.p90 AS spend_prev_90,
  CASE WHEN greatest(b.l90, 0) + greatest(b.p90, 0) > 0
       THEN (greatest(b.l90, 0) - greatest(b.p90, 0)) / (greatest(b.l90, 0) + greatest(b.p90, 0))
  END AS trend,
  g.interpurchase_mean, g.interpurchase_std,
  chan.preferred_channel, dev.preferred_device, band.preferred_hour_band, wday.preferred_weekday,
  cat.top_category, cat.top_category_share,
  bt.x::DOUBLE AS x, bt.t_x, bt.T, bt.monetary_value, DATE '{as_of}' AS as_of
FROM base b JOIN freq f ON f.customer_id = b.customer_id AND f.frequency > 0
LEFT JOIN prods p ON p.customer_id = b.customer_id
LEFT JOIN gaps g ON g.customer_id = b.customer_id LEFT JOIN chan ON chan.customer_id = b.customer_id LEFT JOIN dev ON dev.customer_id = b.customer_id
LEFT JOIN band ON band.customer_id = b.customer_id LEFT JOIN wday ON wday.customer_id = b.customer_id LEFT JOIN cat ON cat.customer_id = b.customer_id
LEFT JOIN btyd bt ON bt.customer_id = b.customer_id;

-- engagement: events and campaign results before the date (bench_features.py runs only the
-- statement above: its warehouse holds the invoice lines alone).
CREATE OR REPLACE TABLE raw_features AS
WITH ev AS (
  SELECT customer_id,
    COUNT(*) FILTER (WHERE event_type = 'cart_abandoned') AS cart_abandonments,
    COUNT(*) FILTER (WHERE event_type = 'email_open') AS email_opens,
    COUNT(*) FILTER (WHERE event_type = 'email_click') AS email_clicks,
    COUNT(*) FILTER (WHERE event_type = 'push_open') AS push_opens,
    COUNT(*) FILTER (WHERE event_type = 'push_click') AS push_clicks
  FROM events WHERE customer_id IS NOT NULL AND timestamp < TIMESTAMP '{as_of}' GROUP BY 1),
sends AS (
  SELECT customer_id,
    COUNT(*) FILTER (WHERE channel = 'email' AND "group" = 'treatment') AS email_sends,
    COUNT(*) FILTER (WHERE channel = 'push' AND "group" = 'treatment') AS push_sends
  FROM campaign_results WHERE sent_at < TIMESTAMP '{as_of}' GROUP BY 1)
SELECT r.* EXCLUDE (as_of),
  COALESCE(ev.cart_abandonments, 0) AS cart_abandonments, COALESCE(ev.email_opens, 0) AS email_opens,
  COALESCE(ev.email_clicks, 0) AS email_clicks, COALESCE(ev.push_opens, 0) AS push_opens,
  COALESCE(ev.push_clicks, 0) AS push_clicks,
  CASE WHEN s.email_sends > 0 THEN COALESCE(ev.email_opens, 0) / s.email_sends END AS email_open_rate,
  CASE WHEN s.push_sends > 0 THEN COALESCE(ev.push_opens, 0) / s.push_sends END AS push_open_rate,
  CASE WHEN ev.email_opens > 0 THEN ev.email_clicks / ev.email_opens END AS email_click_rate,
  CASE WHEN ev.push_opens > 0 THEN ev.push_clicks / ev.push_opens END AS push_click_rate,
  r.as_of
FROM raw_features r LEFT JOIN ev ON ev.customer_id = r.customer_id
LEFT JOIN sends s ON s.customer_id = r.customer_id;
