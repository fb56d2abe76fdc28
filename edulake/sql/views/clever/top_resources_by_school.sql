-- Top 5 resources by distinct students, per school.
-- publish: counts=students; group=clever_school_id
SELECT clever_school_id, school_name, resource_name, resource_type, students, resource_rank
FROM (
    SELECT
        clever_school_id,
        school_name,
        resource_name,
        resource_type,
        students,
        ROW_NUMBER() OVER (
            PARTITION BY clever_school_id ORDER BY students DESC, resource_name
        ) AS resource_rank
    FROM (
        SELECT
            clever_school_id,
            school_name,
            resource_id,
            MAX(resource_name) AS resource_name,
            MAX(resource_type) AS resource_type,
            COUNT(DISTINCT clever_user_id_pseudonym) AS students
        FROM clever.resource_usage
        WHERE role = 'students'
        GROUP BY clever_school_id, school_name, resource_id
    ) AS per_resource
) AS ranked
WHERE resource_rank <= 5
