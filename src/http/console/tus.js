// A small TUS 1.0 client for large files: create the upload at /upload/resumable, then send
// the file in chunks with PATCH. A chunk that fails is retried from the offset the server
// reports (HEAD), so a dropped connection costs at most one chunk.

import { ApiError } from './api.js';

const CHUNK_SIZE = 6 * 1024 * 1024;
const RETRIES = 3;

/** base64 of UTF-8 text, as Upload-Metadata wants its values. */
function base64(text) {
  let binary = '';
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/**
 * Uploads `file` to `bucket`/`name`; `onProgress(bytesDone)` follows every chunk's own
 * progress. Resolves when the server has the whole object.
 */
export async function tusUpload(api, { bucket, name, file, upsert, onProgress }) {
  const metadata = {
    bucketName: bucket,
    objectName: name,
    contentType: file.type || 'application/octet-stream',
  };
  const created = await api.fetch('POST', '/upload/resumable', {
    headers: {
      'Tus-Resumable': '1.0.0',
      'Upload-Length': String(file.size),
      'Upload-Metadata': Object.entries(metadata)
        .map(([key, value]) => `${key} ${base64(value)}`)
        .join(','),
      ...(upsert ? { 'x-upsert': 'true' } : {}),
    },
  });
  const location = created.headers.get('Location');
  if (!location) throw new ApiError(created.status, 'the server did not say where the upload is (no Location)');
  let offset = Number(created.headers.get('Upload-Offset') ?? 0);
  let failures = 0;
  while (offset < file.size) {
    const chunk = file.slice(offset, offset + CHUNK_SIZE);
    const start = offset;
    try {
      const xhr = await api.send(
        'PATCH',
        location,
        chunk,
        {
          'Tus-Resumable': '1.0.0',
          'Upload-Offset': String(start),
          'Content-Type': 'application/offset+octet-stream',
        },
        (sent) => onProgress(start + sent),
      );
      offset = Number(xhr.getResponseHeader('Upload-Offset') ?? start + chunk.size);
      failures = 0;
    } catch (error) {
      // A refusal (4xx other than a conflict of offsets) will not change by retrying.
      const retriable = error.status === 0 || error.status >= 500 || error.status === 409;
      failures += 1;
      if (!retriable || failures > RETRIES) throw error;
      const head = await api.fetch('HEAD', location, { headers: { 'Tus-Resumable': '1.0.0' } });
      offset = Number(head.headers.get('Upload-Offset') ?? start);
    }
  }
  onProgress(file.size);
}
