// The AWS SDK for JavaScript v3 (@aws-sdk/client-s3, lib-storage's multipart Upload), as its
// documentation shows, against pgstorage's S3 API: the static key and a database key under the
// owner-folder policy, default checksums, presigned URLs, multipart uploads. Run by ../test_aws_sdk_js.py with the server's details in
// the environment (see ../conftest.py).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  S3Client,
  CreateBucketCommand,
  PutObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  DeleteObjectCommand,
  CopyObjectCommand,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { Upload } from '@aws-sdk/lib-storage';
import { createHash } from 'node:crypto';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const URL_ = env('PGSTORAGE_URL');

function client(accessKeyId, secretAccessKey, prefix = '/s3', sessionToken = undefined) {
  return new S3Client({
    endpoint: URL_ + prefix,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId, secretAccessKey, sessionToken },
    maxAttempts: 1,
  });
}

const service = client(env('PGSTORAGE_S3_STATIC_ID'), env('PGSTORAGE_S3_STATIC_SECRET'));
const u1 = client(env('PGSTORAGE_S3_DB_ID'), env('PGSTORAGE_S3_DB_SECRET'), '/storage/v1/s3');
const u2 = client('project-ref', env('PGSTORAGE_ANON_KEY'), '/s3', env('PGSTORAGE_USER2_KEY'));
const bucket = `sdk-${randomBytes(4).toString('hex')}`;

test('buckets and objects with the static key', async () => {
  await service.send(new CreateBucketCommand({ Bucket: bucket }));
  const put = await service.send(
    new PutObjectCommand({
      Bucket: bucket,
      Key: 'docs/hello.txt',
      Body: 'hello from the JS SDK',
      ContentType: 'text/plain',
      Metadata: { origin: 'sdk' },
    }),
  );
  assert.match(put.ETag, /^"[0-9a-f]{32}"$/);
  const got = await service.send(new GetObjectCommand({ Bucket: bucket, Key: 'docs/hello.txt' }));
  assert.equal(await got.Body.transformToString(), 'hello from the JS SDK');
  assert.equal(got.ContentType, 'text/plain');
  assert.deepEqual(got.Metadata, { origin: 'sdk' });
  const ranged = await service.send(
    new GetObjectCommand({ Bucket: bucket, Key: 'docs/hello.txt', Range: 'bytes=0-4' }),
  );
  assert.equal(await ranged.Body.transformToString(), 'hello');
  await service.send(
    new CopyObjectCommand({ Bucket: bucket, Key: 'docs/copy.txt', CopySource: `${bucket}/docs/hello.txt` }),
  );
  const listed = await service.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'docs/' }));
  assert.deepEqual(
    listed.Contents.map((o) => o.Key),
    ['docs/copy.txt', 'docs/hello.txt'],
  );
  await service.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'docs/copy.txt' }));
  await assert.rejects(
    service.send(new HeadObjectCommand({ Bucket: bucket, Key: 'docs/copy.txt' })),
    (e) => e.$metadata.httpStatusCode === 404,
  );
});

test('a streamed body', async () => {
  const { Readable } = await import('node:stream');
  const data = randomBytes(300_000);
  await service.send(
    new PutObjectCommand({
      Bucket: bucket,
      Key: 'streamed.bin',
      Body: Readable.from([data.subarray(0, 100_000), data.subarray(100_000)]),
      ContentLength: data.length,
    }),
  );
  const got = await service.send(new GetObjectCommand({ Bucket: bucket, Key: 'streamed.bin' }));
  assert.ok(Buffer.from(await got.Body.transformToByteArray()).equals(data));
});

test('a database key and a session token write only their own folder', async () => {
  await u1.send(new PutObjectCommand({ Bucket: bucket, Key: 'u1/mine.txt', Body: 'u1' }));
  await assert.rejects(
    u1.send(new PutObjectCommand({ Bucket: bucket, Key: 'u2/not-mine.txt', Body: 'x' })),
    (e) => e.name === 'AccessDenied' && e.$metadata.httpStatusCode === 403,
  );
  await u2.send(new PutObjectCommand({ Bucket: bucket, Key: 'u2/mine.txt', Body: 'u2' }));
  await assert.rejects(
    u2.send(new GetObjectCommand({ Bucket: bucket, Key: 'u1/mine.txt' })),
    (e) => e.name === 'NoSuchKey',
  );
  const listed = await u2.send(new ListObjectsV2Command({ Bucket: bucket }));
  assert.deepEqual(
    listed.Contents.map((o) => o.Key),
    ['u2/mine.txt'],
  );
});

test('presigned GET and PUT URLs', async () => {
  const put = await getSignedUrl(service, new PutObjectCommand({ Bucket: bucket, Key: 'pre.txt' }), {
    expiresIn: 60,
  });
  const uploaded = await fetch(put, { method: 'PUT', body: 'by URL' });
  assert.equal(uploaded.status, 200, await uploaded.text());
  const get = await getSignedUrl(service, new GetObjectCommand({ Bucket: bucket, Key: 'pre.txt' }), {
    expiresIn: 60,
  });
  const fetched = await fetch(get);
  assert.equal(fetched.status, 200);
  assert.equal(await fetched.text(), 'by URL');
});

test('errors', async () => {
  const wrong = client(env('PGSTORAGE_S3_STATIC_ID'), 'not-the-secret');
  await assert.rejects(
    wrong.send(new ListObjectsV2Command({ Bucket: bucket })),
    (e) => e.name === 'SignatureDoesNotMatch' && e.$metadata.httpStatusCode === 403,
  );
  await assert.rejects(
    service.send(new GetObjectCommand({ Bucket: 'no-such-bucket-sdk', Key: 'x' })),
    (e) => e.name === 'NoSuchBucket',
  );
});

test('a multipart Upload (lib-storage) with 5 MiB parts, allowed and denied', async () => {
  const data = randomBytes(11 * 1024 * 1024 + 7);
  const sha = (b) => createHash('sha256').update(b).digest('hex');
  for (const [s3, key] of [[service, 'mp/big.bin'], [u1, 'u1/big.bin'], [u2, 'u2/big.bin']]) {
    const upload = new Upload({
      client: s3,
      params: { Bucket: bucket, Key: key, Body: data, ContentType: 'application/x-test' },
      partSize: 5 * 1024 * 1024,
      queueSize: 2,
    });
    const done = await upload.done();
    assert.match(done.ETag, /^"[0-9a-f]{32}-3"$/);
    const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    assert.equal(got.ContentType, 'application/x-test');
    assert.equal(sha(Buffer.from(await got.Body.transformToByteArray())), sha(data));
  }
  // u1 may not start an upload in u2's folder.
  const denied = new Upload({
    client: u1,
    params: { Bucket: bucket, Key: 'u2/not-yours.bin', Body: data },
    partSize: 5 * 1024 * 1024,
  });
  await assert.rejects(denied.done(), (e) => e.name === 'AccessDenied');
});
