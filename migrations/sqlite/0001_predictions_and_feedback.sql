-- the models served: one row per distinct weights file.
create table models (
    id integer primary key,
    name text not null,
    weights_sha256 text not null unique,
    labels text not null,            -- json array, in class order
    metrics text,                    -- the model's metrics.json, when it has one
    first_seen text not null,        -- rfc 3339, utc
    last_seen text not null
);

-- every logged prediction; `id` is the uuid returned to the client.
create table predictions (
    id text primary key,
    model_id integer not null references models (id),
    created_at text not null,
    endpoint text not null,          -- classify, uncertainty, predict, inference_api
    text text,                       -- null when serving with --store-text=false
    text_sha256 text not null,
    label text not null,
    score real not null,
    probabilities text not null,     -- json array, in class order
    predictive_entropy real not null,
    margin real not null,
    -- set only when mc dropout was used
    samples integer,
    mode text,
    seed text,                       -- u64 as decimal text (it does not fit a signed integer)
    expected_entropy real,
    mutual_information real,
    variation_ratio real,
    latency_ms real not null,
    request_id text
);
create index predictions_by_model_time on predictions (model_id, created_at);
create index predictions_by_text on predictions (text_sha256);

-- one human correction per prediction; later feedback replaces earlier.
create table feedback (
    prediction_id text primary key references predictions (id),
    label text not null,
    source text,
    created_at text not null
);
