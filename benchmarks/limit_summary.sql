-- The limit of the run's "summary" step: the same numbers written by hand, one statement per
-- source. Revenue from the net lines before the run's date (identified, anonymous, the
-- customers whose lines net to zero or less, those with only $0 lines), the currencies of the
-- lines with an amount, buyers without a customer record and customers without a purchase,
-- the return lines and how the return links matched them, the invoices cancelled in full,
-- and the size and revenue of each class (RFM segment, value tier, lifecycle stage, value x
-- potential) from the run's classes and features. {as_of}: the run's date.
CREATE OR REPLACE TABLE limit_summary AS
WITH lines AS (
    SELECT customer_id, amount FROM transactions WHERE "timestamp" < TIMESTAMP '{as_of}'
),
per AS (
    SELECT sum(amount) AS net, bool_or(amount < 0) AS returned
    FROM lines WHERE customer_id IS NOT NULL GROUP BY customer_id
)
SELECT t.*, w.* FROM (
    SELECT sum(amount) AS total,
           sum(amount) FILTER (WHERE customer_id IS NOT NULL) AS identified,
           sum(amount) FILTER (WHERE customer_id IS NULL) AS anonymous,
           count(*) FILTER (WHERE amount IS NULL) AS lines_without_amount,
           count(*) AS lines
    FROM lines
) t, (
    SELECT count(*) FILTER (WHERE net <= 0) AS nonpositive,
           sum(net) FILTER (WHERE net <= 0) AS nonpositive_amount,
           count(*) FILTER (WHERE net = 0 AND NOT coalesce(returned, false)) AS only_zero
    FROM per
) w;

CREATE OR REPLACE TABLE limit_summary_currencies AS
SELECT currency, count(*) AS n FROM transactions WHERE amount IS NOT NULL
GROUP BY currency ORDER BY n DESC;

CREATE OR REPLACE TABLE limit_summary_ids AS
WITH buyers AS (SELECT DISTINCT customer_id FROM transactions WHERE customer_id IS NOT NULL),
     records AS (SELECT DISTINCT customer_id FROM customers WHERE customer_id IS NOT NULL)
SELECT (SELECT count(*) FROM buyers) AS buyers,
       (SELECT count(*) FROM records) AS customers,
       (SELECT count(*) FROM buyers ANTI JOIN records USING (customer_id)) AS buyers_without_record,
       (SELECT min(customer_id) FROM buyers ANTI JOIN records USING (customer_id)) AS example_buyer,
       (SELECT count(*) FROM records ANTI JOIN buyers USING (customer_id)) AS customers_without_purchase,
       (SELECT min(customer_id) FROM records ANTI JOIN buyers USING (customer_id)) AS example_customer;

CREATE OR REPLACE TABLE limit_summary_returns AS
SELECT (SELECT count(*) FROM transactions WHERE quantity < 0 AND customer_id IS NOT NULL)
           AS return_lines,
       (SELECT count(*) FROM return_links) AS linked,
       (SELECT count(*) FROM (SELECT DISTINCT customer_id, original_invoice_id
                              FROM return_links WHERE invoice_cancelled)) AS cancelled_orders;

CREATE OR REPLACE TABLE limit_summary_links AS
SELECT match, count(*) AS n FROM return_links GROUP BY match;

CREATE OR REPLACE TABLE limit_summary_shares AS
WITH j AS (
    SELECT c.rfm_segment, c.value_tier, c.lifecycle_stage, c.value_potential, f.monetary
    FROM customer_classes c JOIN customer_features f USING (customer_id)
    WHERE c.as_of = DATE '{as_of}' AND f.as_of = DATE '{as_of}'
),
g AS (
    SELECT GROUPING(rfm_segment, value_tier, lifecycle_stage, value_potential) AS g,
           rfm_segment, value_tier, lifecycle_stage, value_potential,
           count(*) AS customers, sum(monetary) AS revenue
    FROM j
    GROUP BY GROUPING SETS ((rfm_segment), (value_tier), (lifecycle_stage), (value_potential))
)
SELECT *, customers / sum(customers) OVER (PARTITION BY g) AS customer_share,
       revenue / sum(revenue) OVER (PARTITION BY g) AS revenue_share
FROM g;
