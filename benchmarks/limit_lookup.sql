-- The customer lookup by hand: one row per customer of the view (features as of the date and
-- everyone in the profile), with classes, CLV, profile, best contact times, saved segments and
-- discovered segment, sorted by id, with an index for point lookups. Same output as
-- segmentum.precompute.build_lookup.
CREATE OR REPLACE TABLE limit_lookup AS
WITH f AS (SELECT * FROM customer_features WHERE as_of = DATE '{as_of}'),
ids AS (SELECT customer_id FROM f UNION SELECT customer_id FROM customers),
c AS (SELECT * FROM customer_classes WHERE as_of = DATE '{as_of}'),
k AS (SELECT * FROM customer_clv WHERE as_of = DATE '{as_of}'),
p AS (
  SELECT customer_id, gender, country, region, city, income_band,
    COALESCE((YEAR(DATE '{as_of}') - YEAR(birth_date))
             - CASE WHEN MONTH(DATE '{as_of}') < MONTH(birth_date)
                      OR (MONTH(DATE '{as_of}') = MONTH(birth_date)
                          AND DAY(DATE '{as_of}') < DAY(birth_date)) THEN 1 ELSE 0 END,
             age)::BIGINT AS age
  FROM customers),
ct AS (SELECT customer_id, best_hour_band, best_weekday, best_device, best_channel
       FROM contact_times WHERE as_of = (SELECT MAX(as_of) FROM contact_times)),
m AS (SELECT customer_id, LIST_SORT(LIST(segment)) AS segments FROM segment_members
      WHERE as_of = DATE '{as_of}' GROUP BY 1),
cl AS (SELECT customer_id, cluster_name, cluster_name_es FROM customer_clusters
       WHERE as_of = DATE '{as_of}')
SELECT i.customer_id, COALESCE(f.frequency, 0) AS frequency, COALESCE(f.monetary, 0) AS monetary,
  f.recency_days, f.tenure_days, f.avg_order_value, f.promo_share, f.return_rate,
  f.top_category, f.preferred_channel, f.preferred_device,
  c.rfm_segment, c.rfm_segment_es, c.rfm_code, c.value_tier, c.lifecycle_stage,
  c.potential_tier, c.value_potential, c.value_potential_es,
  k.clv_status, k.p_alive, k.churn_probability, k.churn_source, c.alive_flag, c.alive_flag_es,
  k.purchase_model, k.expected_purchases, k.clv, k.expected_next_purchase,
  CASE WHEN p.age < 18 THEN '<18' WHEN p.age <= 24 THEN '18-24' WHEN p.age <= 34 THEN '25-34'
       WHEN p.age <= 44 THEN '35-44' WHEN p.age <= 54 THEN '45-54' WHEN p.age <= 64 THEN '55-64'
       WHEN p.age >= 65 THEN '65+' END AS age_band,
  p.gender, p.country, p.region, p.city, p.age, p.income_band,
  f.trend, f.interpurchase_mean, f.preferred_hour_band,
  ct.best_hour_band, ct.best_weekday, ct.best_device, ct.best_channel,
  m.segments, cl.cluster_name, cl.cluster_name_es, DATE '{as_of}' AS as_of
FROM ids i
LEFT JOIN f USING (customer_id) LEFT JOIN c USING (customer_id) LEFT JOIN k USING (customer_id)
LEFT JOIN p USING (customer_id) LEFT JOIN ct USING (customer_id) LEFT JOIN m USING (customer_id)
LEFT JOIN cl USING (customer_id)
ORDER BY i.customer_id;
CREATE INDEX limit_lookup_id ON limit_lookup (customer_id);
