-- Content-Disposition and Content-Encoding given when a multipart upload is created
-- (CreateMultipartUpload), kept for the completed object's metadata (`contentDisposition`,
-- `contentEncoding`) as PutObject keeps them.
alter table storage.s3_multipart_uploads
    add column content_disposition text,
    add column content_encoding text,
    -- The checksum algorithm asked for at creation (`x-amz-checksum-algorithm`, composite
    -- checksums): each part keeps its checksum of that algorithm, and completion derives the
    -- object's composite checksum from them.
    add column checksum_algorithm text;

-- A part's checksum (base64) of its upload's checksum algorithm, as the client sent and the
-- server verified it.
alter table storage.s3_multipart_uploads_parts add column checksum text;
