-- Distinct active students per school per day.
SELECT
    "date",
    clever_school_id,
    school_name,
    COUNT(DISTINCT clever_user_id_pseudonym) AS active_students
FROM clever.daily_participation
WHERE role = 'students' AND active
GROUP BY "date", clever_school_id, school_name
