-- Average logins and resources accessed per student (per student-day) by school.
-- publish: counts=students; measures=avg_logins_per_student_day, avg_resources_per_student_day
SELECT
    clever_school_id,
    school_name,
    COUNT(DISTINCT clever_user_id_pseudonym) AS students,
    COUNT(DISTINCT "date") AS days,
    AVG(CAST(num_logins AS DOUBLE)) AS avg_logins_per_student_day,
    AVG(CAST(num_resources_accessed AS DOUBLE)) AS avg_resources_per_student_day
FROM clever.daily_participation
WHERE role = 'students'
GROUP BY clever_school_id, school_name
