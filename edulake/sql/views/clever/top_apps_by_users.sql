-- Top apps by distinct users over the whole period.
-- publish: counts=users; measures=accesses
SELECT
    resource_id,
    MAX(resource_name) AS resource_name,
    COUNT(DISTINCT clever_user_id_pseudonym) AS users,
    SUM(num_access) AS accesses
FROM clever.resource_usage
WHERE resource_type = 'app'
GROUP BY resource_id
