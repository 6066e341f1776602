-- Content-Disposition and Content-Encoding given when a multipart upload is created
-- (CreateMultipartUpload), kept for the completed object's metadata (`contentDisposition`,
-- `contentEncoding`) as PutObject keeps them.
alter table storage.s3_multipart_uploads
    add column content_disposition text,
    add column content_encoding text;
