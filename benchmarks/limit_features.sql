CREATE OR REPLACE TABLE raw_features AS
WITH l AS NOT MATERIALIZED (
  SELECT customer_id, invoice_id, product_id, category, sales_channel, device, quantity, amount,
         promo_code, discount, timestamp, CAST(timestamp AS DATE) AS day
  FROM transactions WHERE customer_id IS NOT NULL AND timestamp < TIMESTAMP '{as_of}'),
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
  CASE WHEN b.l90 + b.p90 > 0 THEN (b.l90 - b.p90) / (b.l90 + b.p90) END AS trend,
  g.interpurchase_mean, g.interpurchase_std,
  chan.preferred_channel, dev.preferred_device, band.preferred_hour_band, wday.preferred_weekday,
  cat.top_category, cat.top_category_share,
  bt.x::DOUBLE AS x, bt.t_x, bt.T, bt.monetary_value, DATE '{as_of}' AS as_of
FROM base b JOIN freq f ON f.customer_id = b.customer_id AND f.frequency > 0
LEFT JOIN prods p ON p.customer_id = b.customer_id
LEFT JOIN gaps g ON g.customer_id = b.customer_id LEFT JOIN chan ON chan.customer_id = b.customer_id LEFT JOIN dev ON dev.customer_id = b.customer_id
LEFT JOIN band ON band.customer_id = b.customer_id LEFT JOIN wday ON wday.customer_id = b.customer_id LEFT JOIN cat ON cat.customer_id = b.customer_id
LEFT JOIN btyd bt ON bt.customer_id = b.customer_id
