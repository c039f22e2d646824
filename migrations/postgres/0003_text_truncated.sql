-- 1 when the stored text is only the first --max-stored-text-chars
-- characters of the input (text_sha256 is still that of the whole input),
-- 0 otherwise; rows logged before this migration were never cut.
alter table predictions add column text_truncated integer not null default 0;
