-- Distinct active students per school per day.
-- publish: counts=active_students; group=date
-- (the day's total across schools is published by usage_over_time)
SELECT
    "date",
    clever_school_id,
    school_name,
    COUNT(DISTINCT clever_user_id_pseudonym) AS active_students
FROM clever.daily_participation
WHERE role = 'students' AND active
GROUP BY "date", clever_school_id, school_name
