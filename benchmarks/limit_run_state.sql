-- The limit of the run's "save run state" step: what the next run checks its plan against,
-- written by hand. The count and an order-free checksum (the sum of 31 bits of each row's
-- hash) of the invoice lines before the run's date over the columns the features read, and of
-- every line over those the return links read (one scan), of the events and of the campaign
-- results before the date. {as_of}: the run's date.
CREATE OR REPLACE TABLE limit_run_state AS
SELECT 'lines' AS part,
       count(*) FILTER (WHERE "timestamp" < TIMESTAMP '{as_of}') AS n,
       coalesce(sum(hash(invoice_id, line, customer_id, "timestamp", quantity, amount,
                         product_id, category, promo_code, discount, sales_channel, device,
                         original_invoice_id) >> 33)
                FILTER (WHERE "timestamp" < TIMESTAMP '{as_of}'), 0)::BIGINT AS checksum,
       count(*) AS n_every_line,
       coalesce(sum(hash(invoice_id, line, customer_id, "timestamp", product_id, quantity,
                         amount, original_invoice_id) >> 33), 0)::BIGINT AS checksum_every_line
FROM transactions
UNION ALL
SELECT 'events', count(*),
       coalesce(sum(hash(customer_id, event_type, "timestamp") >> 33), 0)::BIGINT, NULL, NULL
FROM events WHERE "timestamp" < TIMESTAMP '{as_of}'
UNION ALL
SELECT 'results', count(*),
       coalesce(sum(hash(customer_id, channel, "group", sent_at) >> 33), 0)::BIGINT, NULL, NULL
FROM campaign_results WHERE sent_at < TIMESTAMP '{as_of}';
