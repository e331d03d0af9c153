-- The dashboard aggregates by hand: what segmentum.precompute.build_overview stores in
-- dashboard_cache, as tables instead of one JSON document. The customer view once (only the
-- columns the aggregates read), then: buyers and revenue, the shares of the four class
-- columns and the R x F heatmap in one GROUPING SETS pass, the CLV (log) and churn
-- histograms (20 bins between the observed min and max), the saved segments' sizes, the
-- geography drill-down in one GROUPING SETS pass, the micro-segments (value tier > region >
-- city > age band: every customer's deepest cell of at least 50 customers, the cells' sizes,
-- revenue and CLV in one GROUPING SETS pass, the customers each cell keeps, and each kept
-- cell's persona: the most common value of nine columns with its share, and the most common
-- lifestyle tag), the saved segments' profiles (means of the numeric columns and counts of
-- the categorical ones, members against the rest, on the same 20,000-customer hash sample;
-- bench_steps.LIMIT_DASHBOARD then runs each segment's tests and describing tree on that
-- sample), and the value-tier migration between the last two snapshots. Left out: the
-- tier forecast (a Markov fit on the snapshots' transition counts; 0.1 s at 870,000
-- customers). A persona's top value on a tie may differ from segmentum's (which breaks ties
-- by value): the same cost.
CREATE OR REPLACE TEMP TABLE dv AS
WITH f AS (SELECT customer_id, frequency, monetary, preferred_hour_band, preferred_weekday,
                  preferred_channel, preferred_device FROM customer_features
           WHERE as_of = DATE '{as_of}'),
c AS (SELECT customer_id, rfm_segment, value_tier, lifecycle_stage, value_potential,
             r_score, f_score FROM customer_classes WHERE as_of = DATE '{as_of}'),
k AS (SELECT customer_id, clv, churn_probability FROM customer_clv
      WHERE as_of = DATE '{as_of}'),
p AS (
  SELECT customer_id, country, region, state, city, neighbourhood, gender, tags,
    COALESCE((YEAR(DATE '{as_of}') - YEAR(birth_date))
             - CASE WHEN MONTH(DATE '{as_of}') < MONTH(birth_date)
                      OR (MONTH(DATE '{as_of}') = MONTH(birth_date)
                          AND DAY(DATE '{as_of}') < DAY(birth_date)) THEN 1 ELSE 0 END,
             age)::BIGINT AS age
  FROM customers)
SELECT COALESCE(f.customer_id, p.customer_id) AS customer_id,
  COALESCE(f.frequency, 0) AS frequency, COALESCE(f.monetary, 0) AS monetary,
  c.rfm_segment, c.value_tier, c.lifecycle_stage, c.value_potential, c.r_score, c.f_score,
  k.clv, k.churn_probability, p.country, p.region, p.state, p.city, p.neighbourhood,
  p.gender, p.tags, f.preferred_hour_band, f.preferred_weekday, f.preferred_channel,
  f.preferred_device,
  CASE WHEN p.age < 18 THEN '<18' WHEN p.age BETWEEN 18 AND 24 THEN '18-24'
       WHEN p.age BETWEEN 25 AND 34 THEN '25-34' WHEN p.age BETWEEN 35 AND 44 THEN '35-44'
       WHEN p.age BETWEEN 45 AND 54 THEN '45-54' WHEN p.age BETWEEN 55 AND 64 THEN '55-64'
       WHEN p.age >= 65 THEN '65+' END AS age_band
FROM f FULL JOIN p USING (customer_id)
LEFT JOIN c USING (customer_id) LEFT JOIN k USING (customer_id);

CREATE OR REPLACE TABLE limit_dashboard_shares AS
SELECT rfm_segment, value_tier, lifecycle_stage, value_potential, r_score, f_score,
  GROUPING(rfm_segment, value_tier, lifecycle_stage, value_potential, r_score, f_score) AS g,
  COUNT(*) AS customers, SUM(monetary) AS revenue
FROM dv WHERE frequency > 0
GROUP BY GROUPING SETS ((), (rfm_segment), (value_tier), (lifecycle_stage), (value_potential),
                        (r_score, f_score));

CREATE OR REPLACE TABLE limit_dashboard_histograms AS
WITH v AS (SELECT LN(GREATEST(clv, 0) + 1) AS clv, churn_probability AS churn FROM dv
           WHERE frequency > 0),
r AS (SELECT MIN(clv) AS c0, MAX(clv) AS c1, MIN(churn) AS p0, MAX(churn) AS p1 FROM v
      WHERE NOT isnan(clv) AND NOT isnan(churn))
SELECT 'clv' AS what,
  GREATEST(LEAST(FLOOR((clv - c0) / NULLIF((c1 - c0) / 20, 0))::BIGINT, 19), 0) AS bin,
  COUNT(*) AS n
FROM v, r WHERE clv IS NOT NULL AND NOT isnan(clv) GROUP BY ALL
UNION ALL
SELECT 'churn', GREATEST(LEAST(FLOOR((churn - p0) / NULLIF((p1 - p0) / 20, 0))::BIGINT, 19), 0),
  COUNT(*)
FROM v, r WHERE churn IS NOT NULL AND NOT isnan(churn) GROUP BY ALL;

CREATE OR REPLACE TABLE limit_dashboard_segments AS
SELECT segment, COUNT(*) AS customers FROM segment_members WHERE as_of = DATE '{as_of}'
GROUP BY 1;

CREATE OR REPLACE TABLE limit_dashboard_geography AS
SELECT country, region, state, city, neighbourhood, COUNT(*) AS customers,
  SUM(monetary) AS revenue, AVG(clv) AS avg_clv
FROM (SELECT COALESCE(country::VARCHAR, '(missing)') AS country,
             COALESCE(region::VARCHAR, '(missing)') AS region,
             COALESCE(state::VARCHAR, '(missing)') AS state,
             COALESCE(city::VARCHAR, '(missing)') AS city,
             COALESCE(neighbourhood::VARCHAR, '(missing)') AS neighbourhood, monetary, clv
      FROM dv)
GROUP BY GROUPING SETS ((country), (country, region), (country, region, state),
                        (country, region, state, city),
                        (country, region, state, city, neighbourhood));

CREATE OR REPLACE TEMP TABLE limit_micro_assigned AS
WITH l AS (
  SELECT customer_id, COALESCE(value_tier::VARCHAR, '(unknown)') AS d0,
    COALESCE(region::VARCHAR, '(unknown)') AS d1, COALESCE(city::VARCHAR, '(unknown)') AS d2,
    COALESCE(age_band, '(unknown)') AS d3, monetary, clv, age_band, gender, city, rfm_segment,
    value_tier, preferred_hour_band, preferred_weekday, preferred_channel, preferred_device, tags
  FROM dv),
n3 AS (SELECT d0, d1, d2, d3, COUNT(*) AS n3 FROM l GROUP BY ALL),
n2 AS (SELECT d0, d1, d2, SUM(n3) AS n2 FROM n3 GROUP BY ALL),
n1 AS (SELECT d0, d1, SUM(n2) AS n1 FROM n2 GROUP BY ALL),
n0 AS (SELECT d0, SUM(n1) AS n0 FROM n1 GROUP BY ALL)
SELECT l.*, n0, n1, n2, n3,
  CASE WHEN n0 < 50 THEN '' WHEN n1 < 50 THEN d0 WHEN n2 < 50 THEN d0 || ' > ' || d1
       WHEN n3 < 50 THEN d0 || ' > ' || d1 || ' > ' || d2
       ELSE d0 || ' > ' || d1 || ' > ' || d2 || ' > ' || d3 END AS micro_segment
FROM l JOIN n3 USING (d0, d1, d2, d3) JOIN n2 USING (d0, d1, d2) JOIN n1 USING (d0, d1)
JOIN n0 USING (d0);

CREATE OR REPLACE TABLE limit_dashboard_micro AS
SELECT d0, d1, d2, d3, GROUPING(d0, d1, d2, d3) AS g, COUNT(*) AS customers,
  SUM(monetary) AS revenue, AVG(clv) AS avg_clv
FROM limit_micro_assigned
GROUP BY GROUPING SETS ((), (d0), (d0, d1), (d0, d1, d2), (d0, d1, d2, d3))
HAVING COUNT(*) >= 50;

CREATE OR REPLACE TABLE limit_dashboard_micro_own AS
SELECT micro_segment, COUNT(*) AS customers FROM limit_micro_assigned GROUP BY 1;

CREATE OR REPLACE TABLE limit_dashboard_personas AS
WITH u AS (
  SELECT micro_segment, 'age band' AS label, age_band::VARCHAR AS value
  FROM limit_micro_assigned WHERE age_band IS NOT NULL
  UNION ALL SELECT micro_segment, 'gender', gender::VARCHAR
  FROM limit_micro_assigned WHERE gender IS NOT NULL
  UNION ALL SELECT micro_segment, 'place', city::VARCHAR
  FROM limit_micro_assigned WHERE city IS NOT NULL
  UNION ALL SELECT micro_segment, 'behaviour', rfm_segment::VARCHAR
  FROM limit_micro_assigned WHERE rfm_segment IS NOT NULL
  UNION ALL SELECT micro_segment, 'value', value_tier::VARCHAR
  FROM limit_micro_assigned WHERE value_tier IS NOT NULL
  UNION ALL SELECT micro_segment, 'best time', preferred_hour_band::VARCHAR
  FROM limit_micro_assigned WHERE preferred_hour_band IS NOT NULL
  UNION ALL SELECT micro_segment, 'best day', preferred_weekday::VARCHAR
  FROM limit_micro_assigned WHERE preferred_weekday IS NOT NULL
  UNION ALL SELECT micro_segment, 'channel', preferred_channel::VARCHAR
  FROM limit_micro_assigned WHERE preferred_channel IS NOT NULL
  UNION ALL SELECT micro_segment, 'device', preferred_device::VARCHAR
  FROM limit_micro_assigned WHERE preferred_device IS NOT NULL),
c AS (SELECT micro_segment, label, value, COUNT(*) AS n FROM u GROUP BY ALL),
t AS (SELECT micro_segment, tag, COUNT(*) AS n
      FROM (SELECT micro_segment,
                   LOWER(TRIM(UNNEST(STRING_SPLIT(REPLACE(tags, '|', ','), ',')))) AS tag
            FROM limit_micro_assigned WHERE tags IS NOT NULL)
      WHERE tag <> '' GROUP BY ALL)
SELECT micro_segment, label, ARG_MAX(value, n) AS value, MAX(n) / SUM(n) AS share
FROM c GROUP BY ALL
UNION ALL
SELECT micro_segment, 'lifestyle', ARG_MAX(tag, n), NULL FROM t GROUP BY ALL;

CREATE OR REPLACE TABLE limit_dashboard_sample AS
WITH l AS (SELECT * FROM customer_lookup WHERE frequency > 0),
n AS (SELECT COUNT(*) AS total FROM l)
SELECT l.* FROM l, n
WHERE ABS(HASH(customer_id || '#0')) % 100000 < CAST(100000 * 20000 / total AS BIGINT) + 1;

CREATE OR REPLACE TABLE limit_dashboard_profiles AS
WITH s AS (SELECT * FROM limit_dashboard_sample),
m AS (SELECT segment, customer_id FROM segment_members
      WHERE as_of = DATE '{as_of}' AND customer_id IN (SELECT customer_id FROM s)),
names AS (SELECT DISTINCT segment FROM segment_members WHERE as_of = DATE '{as_of}'),
x AS (SELECT names.segment, s.*, m.customer_id IS NOT NULL AS inside
      FROM names CROSS JOIN s
      LEFT JOIN m ON m.segment = names.segment AND m.customer_id = s.customer_id)
SELECT segment, inside, COUNT(*) AS n, AVG(monetary) AS monetary, AVG(frequency) AS frequency,
  AVG(recency_days) AS recency_days, AVG(tenure_days) AS tenure_days,
  AVG(avg_order_value) AS avg_order_value, AVG(promo_share) AS promo_share,
  AVG(return_rate) AS return_rate, AVG(interpurchase_mean) AS interpurchase_mean,
  AVG(trend) AS trend, AVG(clv) AS clv,
  AVG(churn_probability) AS churn_probability, AVG(age) AS age,
  HISTOGRAM(gender) AS gender, HISTOGRAM(region) AS region, HISTOGRAM(city) AS city,
  HISTOGRAM(income_band) AS income_band, HISTOGRAM(preferred_channel) AS preferred_channel,
  HISTOGRAM(preferred_device) AS preferred_device,
  HISTOGRAM(preferred_hour_band) AS preferred_hour_band, HISTOGRAM(age_band) AS age_band,
  HISTOGRAM(top_category) AS top_category
FROM x GROUP BY 1, 2;

CREATE OR REPLACE TABLE limit_dashboard_migration AS
WITH d AS (SELECT DISTINCT as_of FROM customer_classes ORDER BY as_of DESC LIMIT 2),
a AS (SELECT customer_id, value_tier FROM customer_classes
      WHERE as_of = (SELECT MIN(as_of) FROM d)),
b AS (SELECT customer_id, value_tier FROM customer_classes
      WHERE as_of = (SELECT MAX(as_of) FROM d))
SELECT a.value_tier AS before, b.value_tier AS after, COUNT(*) AS customers
FROM a FULL JOIN b USING (customer_id) GROUP BY 1, 2;
