-- the models served: one row per distinct weights file.
create table models (
    id bigint generated always as identity primary key,
    name text not null,
    weights_sha256 text not null unique,
    labels jsonb not null,           -- array, in class order
    metrics jsonb,                   -- the model's metrics.json, when it has one
    first_seen timestamptz not null,
    last_seen timestamptz not null
);

-- every logged prediction; `id` is the uuid returned to the client.
create table predictions (
    id uuid primary key,
    model_id bigint not null references models (id),
    created_at timestamptz not null,
    endpoint text not null,          -- classify, uncertainty, predict, inference_api
    text text,                       -- null when serving with --store-text=false
    text_sha256 text not null,
    label text not null,
    score double precision not null,
    probabilities jsonb not null,    -- array, in class order
    predictive_entropy double precision not null,
    margin double precision not null,
    -- set only when mc dropout was used
    samples integer,
    mode text,
    seed text,                       -- u64 as decimal text (it does not fit bigint)
    expected_entropy double precision,
    mutual_information double precision,
    variation_ratio double precision,
    latency_ms double precision not null,
    request_id text
);
create index predictions_by_model_time on predictions (model_id, created_at);
create index predictions_by_text on predictions (text_sha256);

-- one human correction per prediction; later feedback replaces earlier.
create table feedback (
    prediction_id uuid primary key references predictions (id),
    label text not null,
    source text,
    created_at timestamptz not null
);
