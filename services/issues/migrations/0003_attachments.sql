-- Photos: each image stored once by the SHA-256 of what is kept (location data removed), and
-- which issues it is attached to.
create table attachments (
    sha256 text not null,
    content_type text not null,
    size_bytes bigint not null,
    content blob not null,
    created_at text not null,
    updated_at text not null,
    primary key (sha256)
);

create table issue_attachments (
    street text not null,
    issue_id text not null,
    sha256 text not null,
    uploaded_by text not null,
    created_at text not null,
    updated_at text not null,
    primary key (street, issue_id, sha256)
);
