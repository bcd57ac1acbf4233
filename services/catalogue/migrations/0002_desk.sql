-- The reception desk: applications (the whole case encoded as civic.catalogue.v1.Application,
-- with the columns lists filter on) and inquiries.
create table applications (
    street text not null,
    application_id text not null,
    applicant text not null,
    handler text not null,
    state text not null,
    due_time text not null,
    version bigint not null,
    body blob not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, application_id)
);
create index applications_newest on applications (street, created_at, application_id);
create index applications_by_applicant on applications (street, applicant, created_at);

create table inquiries (
    street text not null,
    inquiry_id text not null,
    body blob not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, inquiry_id)
);
create index inquiries_newest on inquiries (street, created_at, inquiry_id);
