-- The classes step by hand: RFM quintiles and named segment, value tier (Pareto 80/15/5 of
-- net spend), lifecycle stage against each customer's own rhythm, potential tier (Pareto of
-- predicted CLV), the value x potential cell and the "silent but alive" flag, for every
-- customer of the features as of the date. Same rules as segmentum.segments.classes.classify
-- with the default settings; one statement, each window computed once.
CREATE OR REPLACE TABLE limit_classes AS
WITH f AS (SELECT * FROM customer_features WHERE as_of = DATE '{as_of}'),
k AS (SELECT * FROM customer_clv WHERE as_of = DATE '{as_of}'),
scored AS (
  SELECT customer_id,
    CASE WHEN recency_days IS NULL THEN NULL ELSE
      floor((rank() OVER (ORDER BY -recency_days::DOUBLE) - 1) * 5
            / count(recency_days) OVER ())::BIGINT + 1 END AS r_score,
    CASE WHEN frequency IS NULL THEN NULL ELSE
      floor((rank() OVER (ORDER BY frequency::DOUBLE) - 1) * 5
            / count(frequency) OVER ())::BIGINT + 1 END AS f_score,
    CASE WHEN monetary IS NULL THEN NULL ELSE
      floor((rank() OVER (ORDER BY monetary) - 1) * 5
            / nullif(count(monetary) OVER (), 0))::BIGINT + 1 END AS m_score
  FROM f),
-- Pareto tiers: the share of the total held by customers with a strictly larger value.
vlev AS (
  SELECT v, s, sum(s) OVER (ORDER BY v DESC ROWS UNBOUNDED PRECEDING) - s AS before,
         sum(s) OVER () AS total
  FROM (SELECT coalesce(monetary, 0.0) AS v, sum(greatest(coalesce(monetary, 0.0), 0.0)) AS s
        FROM f GROUP BY 1)),
plev AS (
  SELECT v, s, sum(s) OVER (ORDER BY v DESC ROWS UNBOUNDED PRECEDING) - s AS before,
         sum(s) OVER () AS total
  FROM (SELECT coalesce(clv, 0.0) AS v, sum(greatest(coalesce(clv, 0.0), 0.0)) AS s
        FROM k WHERE clv_status = 'scored' GROUP BY 1)),
med AS (
  SELECT median(interpurchase_mean) AS gap, median(recency_days::DOUBLE) AS rec FROM f),
life AS (
  SELECT f.customer_id,
    (coalesce(x, 0) * coalesce(interpurchase_mean, 0.0)
       + 2.0 * coalesce(med.gap, greatest(med.rec, 1.0))) / (coalesce(x, 0) + 2.0) AS expected,
    coalesce(x, 0) AS n_gaps, tenure_days, recency_days,
    coalesce(med.gap, greatest(med.rec, 1.0)) AS median_gap, med.gap IS NULL AS no_rhythm
  FROM f CROSS JOIN med),
base AS (
  SELECT s.*, f.as_of, l.expected, l.no_rhythm,
    l.recency_days::DOUBLE / greatest(l.expected, 1.0) AS ratio, l.n_gaps, l.tenure_days,
    l.median_gap, coalesce(f.monetary, 0.0) AS v, k.clv_status,
    CASE WHEN k.clv_status = 'scored' THEN coalesce(k.clv, 0.0) END AS pv,
    coalesce(k.p_alive, 1 - k.churn_probability) AS alive
  FROM scored s
  JOIN f USING (customer_id)
  JOIN life l USING (customer_id)
  LEFT JOIN k USING (customer_id)),
j AS (
  SELECT b.*,
    CASE WHEN vl.total > 0 THEN vl.before / vl.total ELSE 1.0 END AS v_before,
    CASE WHEN pl.total > 0 THEN pl.before / pl.total ELSE 1.0 END AS p_before
  FROM base b
  JOIN vlev vl ON vl.v = b.v
  LEFT JOIN plev pl ON pl.v = b.pv),
t AS (
  SELECT *,
    CASE WHEN v_before < 0.80 AND v > 0 THEN 'high'
         WHEN v_before < 0.95 AND v > 0 THEN 'medium' ELSE 'low' END AS value_tier,
    CASE WHEN clv_status IS DISTINCT FROM 'scored' THEN 'too_new'
         WHEN p_before < 0.80 AND pv > 0 THEN 'high'
         WHEN p_before < 0.95 AND pv > 0 THEN 'medium' ELSE 'low' END AS potential_tier,
    CASE WHEN n_gaps = 0 AND tenure_days <= median_gap THEN 'new'
         WHEN ratio <= 1.5 THEN 'active' WHEN ratio <= 3.0 THEN 'at_risk'
         WHEN ratio <= 6.0 THEN 'lapsed' ELSE 'lost' END AS lifecycle_stage
  FROM j)
SELECT customer_id, as_of, r_score, f_score, m_score,
  r_score::VARCHAR || f_score::VARCHAR || m_score::VARCHAR AS rfm_code,
  CASE
    WHEN r_score BETWEEN 5 AND 5 AND f_score BETWEEN 4 AND 5 THEN 'Champions'
    WHEN r_score BETWEEN 3 AND 4 AND f_score BETWEEN 4 AND 5 THEN 'Loyal'
    WHEN r_score BETWEEN 4 AND 5 AND f_score BETWEEN 2 AND 3 THEN 'Potential Loyalist'
    WHEN r_score BETWEEN 5 AND 5 AND f_score BETWEEN 1 AND 1 THEN 'New'
    WHEN r_score BETWEEN 4 AND 4 AND f_score BETWEEN 1 AND 1 THEN 'Promising'
    WHEN r_score BETWEEN 3 AND 3 AND f_score BETWEEN 3 AND 3 THEN 'Need Attention'
    WHEN r_score BETWEEN 3 AND 3 AND f_score BETWEEN 1 AND 2 THEN 'About to Sleep'
    WHEN r_score BETWEEN 1 AND 2 AND f_score BETWEEN 5 AND 5 THEN 'Can''t Lose Them'
    WHEN r_score BETWEEN 1 AND 2 AND f_score BETWEEN 3 AND 4 THEN 'At Risk'
    WHEN r_score BETWEEN 1 AND 1 AND f_score BETWEEN 1 AND 1 THEN 'Lost'
    WHEN r_score BETWEEN 1 AND 2 AND f_score BETWEEN 1 AND 2 THEN 'Hibernating'
  END AS rfm_segment,
  value_tier, v_before AS revenue_share_before, lifecycle_stage, expected AS expected_gap_days,
  ratio AS recency_ratio,
  CASE WHEN no_rhythm THEN 'population_recency' ELSE 'purchase_rhythm' END AS lifecycle_basis,
  potential_tier,
  CASE WHEN potential_tier = 'too_new' THEN 'Too new to judge'
       ELSE CASE value_tier || '/' || potential_tier
         WHEN 'high/high' THEN 'Stars' WHEN 'high/medium' THEN 'Maintain'
         WHEN 'high/low' THEN 'Re-activate' WHEN 'medium/high' THEN 'Grow'
         WHEN 'medium/medium' THEN 'Develop' WHEN 'medium/low' THEN 'Harvest'
         WHEN 'low/high' THEN 'Rising' WHEN 'low/medium' THEN 'Nurture'
         WHEN 'low/low' THEN 'Low priority' END END AS value_potential,
  CASE WHEN alive >= 0.5 AND ratio > 3.0 THEN 'silent ' || (round(ratio * 10)::BIGINT // 10)
       || '.' || (round(ratio * 10)::BIGINT % 10) || 'x their usual gap between purchases: '
       || 'P(alive) is not trusted' END AS alive_flag
FROM t;
