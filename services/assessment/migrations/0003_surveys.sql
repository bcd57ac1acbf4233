-- Surveys (满意度测评, 民主评议). `body` is the API's message; the columns are what lists filter on
-- and what a month's reviews read: the closed surveys of a month with the sum and count of their
-- ratings.
create table surveys (
    street text not null,
    survey_id text not null,
    community_id text not null,
    month text not null,
    -- SATISFACTION or DEMOCRATIC_REVIEW.
    kind text not null,
    -- The worker it is about (a user id), or empty.
    subject text not null,
    -- OPEN or CLOSED.
    state text not null,
    min_answers bigint not null,
    answer_count bigint not null,
    rating_sum bigint not null,
    rating_count bigint not null,
    body blob not null,
    version bigint not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, survey_id)
);
create index surveys_by_month on surveys (street, month, community_id);

-- The grids whose residents answer a satisfaction survey.
create table survey_grids (
    street text not null,
    survey_id text not null,
    community_id text not null,
    grid_id text not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, survey_id, community_id, grid_id)
);

-- Who has answered: the SHA-256 of the survey's name and the person's user id, so one person
-- answers once and the table lists no names in clear. Nothing links a voter to an answer: the
-- answers have ids of their own, drawn at random, and both keep only the day.
create table survey_voters (
    street text not null,
    survey_id text not null,
    voter text not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, survey_id, voter)
);

-- The answers: the ratings in the questions' order, as `5,4,3`.
create table survey_answers (
    street text not null,
    survey_id text not null,
    answer_id text not null,
    ratings text not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, survey_id, answer_id)
);
