-- the review queue, kept ready: one row per model and distinct input text
-- (text_sha256), naming the most uncertain of its predictions and that
-- prediction's place in the queue. It is kept by the same transactions that
-- insert predictions and feedback. Once any prediction of the text by the
-- model has feedback, `labelled` turns 1 and the text leaves the queue for
-- good: the row stays, so a later prediction of the same text does not
-- bring it back.
--
-- the queue's order is: abstained first, then highest mutual information
-- (predictions without mc figures after those with), then highest
-- predictive entropy, then lowest score, then prediction id. it is stored as
-- keys that all sort ascending, so one index serves it and a page resumes
-- after a row value: (not_abstained, ..., prediction_id) > (cursor).
-- the rows are derived data written by the same transactions as the rows
-- they point to, so there are no foreign keys: each would cost a lookup per
-- logged prediction on the insert path.
create table review_items (
    model_id integer not null,
    text_sha256 text not null,
    prediction_id text not null,
    not_abstained integer not null,        -- 0 when the answer abstained, else 1
    without_information integer not null,  -- 0 with mc figures, 1 without
    negated_information real not null,     -- -mutual_information, 0 without
    negated_entropy real not null,         -- -predictive_entropy
    score real not null,
    labelled integer not null default 0,   -- 1 once the text has feedback
    primary key (model_id, text_sha256)
) without rowid;
create index review_items_pending on review_items (
    model_id, not_abstained, without_information, negated_information,
    negated_entropy, score, prediction_id
) where labelled = 0;

-- backfill from what is logged so far: per model and text, the first
-- prediction in queue order, labelled when any of them has feedback.
insert into review_items (
    model_id, text_sha256, prediction_id, not_abstained, without_information,
    negated_information, negated_entropy, score, labelled
)
select model_id, text_sha256, id, not_abstained, without_information,
       negated_information, negated_entropy, score, labelled
from (
    select keyed.*,
           max(has_feedback) over (partition by model_id, text_sha256) as labelled,
           row_number() over (
               partition by model_id, text_sha256
               order by not_abstained, without_information, negated_information,
                        negated_entropy, score, id
           ) as place
    from (
        select p.model_id, p.text_sha256, p.id,
               1 - coalesce(p.abstained, 0) as not_abstained,
               case when p.mutual_information is null then 1 else 0 end as without_information,
               -coalesce(p.mutual_information, 0) as negated_information,
               -p.predictive_entropy as negated_entropy,
               p.score,
               case when f.prediction_id is null then 0 else 1 end as has_feedback
        from predictions p left join feedback f on f.prediction_id = p.id
    ) keyed
) ranked
where place = 1;
