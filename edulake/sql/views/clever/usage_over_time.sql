-- Logins and resource usage over time, per day and role.
-- publish: counts=active_users; group=date; measures=logins, resources_accessed
SELECT
    p."date",
    p.role,
    COUNT(DISTINCT CASE WHEN p.active THEN p.clever_user_id_pseudonym END) AS active_users,
    SUM(p.num_logins) AS logins,
    SUM(p.num_resources_accessed) AS resources_accessed
FROM clever.daily_participation AS p
GROUP BY p."date", p.role
