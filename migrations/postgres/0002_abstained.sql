-- 1 when the answer abstained (an abstention policy applied and the
-- prediction was too uncertain), 0 when a policy applied and it answered,
-- null when no policy applied. The review queue puts abstentions first.
alter table predictions add column abstained integer;
