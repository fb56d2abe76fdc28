-- The cleaned LibInsight table of one dataset for Tableau (the seed pipeline's Athena query):
-- every record with calendar fields Tableau users group by. Written against the short
-- database name (libinsight); edulake maps it to the Glue database (<prefix>_libinsight).
-- Per table: the athena-query deployment's trigger passes the table LibInsight committed
-- (one table per dataset); a run by hand passes table=<name>, else this default.
-- default table: reference_desk
SELECT
    r.*,
    CAST(r.start_date AS DATE) AS start_day,
    year(r.start_date) AS start_year,
    day_of_week(r.start_date) AS start_weekday,
    hour(r.start_date) AS start_hour
FROM libinsight.${table} AS r
WHERE r.start_date IS NOT NULL
ORDER BY r.start_date, r.id
