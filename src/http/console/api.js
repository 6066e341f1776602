// The REST API client: every call carries the signed-in key as `apikey` and as a bearer token,
// so the server's row level security decides what this identity sees.

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** "403 AccessDenied: ..." — what the user is shown. */
  describe() {
    if (this.status === 0) return this.message;
    return `${this.status}${this.code ? ` ${this.code}` : ''}: ${this.message}`;
  }
}

/** The API's root: the console is served at `<root>/console/`, e.g. `/storage/v1/console/`. */
export function apiRoot() {
  const path = location.pathname;
  const at = path.lastIndexOf('/console');
  return at >= 0 ? path.slice(0, at) : '';
}

/** An object path as URL segments, each one percent-encoded. */
export function encodePath(path) {
  return path.split('/').map(encodeURIComponent).join('/');
}

async function errorOf(response) {
  let message = response.statusText || 'request failed';
  let code;
  const text = await response.text().catch(() => '');
  try {
    const body = JSON.parse(text);
    message = body.message ?? body.error ?? message;
    code = body.code ?? body.error;
  } catch {
    if (text) message = text.slice(0, 300);
  }
  return new ApiError(response.status, message, code);
}

export class Api {
  constructor(key) {
    this.key = key || '';
    this.root = apiRoot();
  }

  url(path) {
    return this.root + path;
  }

  headers(extra = {}) {
    const headers = { ...extra };
    if (this.key) {
      headers.apikey = this.key;
      headers.Authorization = `Bearer ${this.key}`;
    }
    return headers;
  }

  /** A fetch that throws ApiError for a network failure or a status other than 2xx. */
  async fetch(method, path, { json, body, headers } = {}) {
    const init = { method, headers: this.headers(headers), cache: 'no-store' };
    if (json !== undefined) {
      init.body = JSON.stringify(json);
      init.headers['Content-Type'] = 'application/json';
    } else if (body !== undefined) {
      init.body = body;
    }
    let response;
    try {
      response = await fetch(path.startsWith('http') ? path : this.url(path), init);
    } catch (error) {
      throw new ApiError(0, `network error: ${error.message}`);
    }
    if (!response.ok) throw await errorOf(response);
    return response;
  }

  /** The answer's JSON (null for an empty body). */
  async json(method, path, options) {
    const response = await this.fetch(method, path, options);
    const text = await response.text();
    return text ? JSON.parse(text) : null;
  }

  /**
   * Sends `body` with XMLHttpRequest, whose upload events report progress (fetch has none).
   * Resolves with the XHR; `onProgress(sentBytes)` is called as bytes leave.
   */
  send(method, url, body, headers, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(method, url.startsWith('http') ? url : this.url(url));
      for (const [name, value] of Object.entries(this.headers(headers))) {
        xhr.setRequestHeader(name, value);
      }
      xhr.upload.onprogress = (event) => onProgress?.(event.loaded);
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          onProgress?.(body.size ?? 0);
          resolve(xhr);
          return;
        }
        let message = xhr.statusText || 'request failed';
        let code;
        try {
          const parsed = JSON.parse(xhr.responseText);
          message = parsed.message ?? parsed.error ?? message;
          code = parsed.code ?? parsed.error;
        } catch {
          if (xhr.responseText) message = xhr.responseText.slice(0, 300);
        }
        reject(new ApiError(xhr.status, message, code));
      };
      xhr.onerror = () => reject(new ApiError(0, 'network error during the upload'));
      xhr.onabort = () => reject(new ApiError(0, 'upload aborted'));
      xhr.send(body);
    });
  }

  // --- the routes the console uses ------------------------------------------------------

  listBuckets() {
    return this.json('GET', '/bucket');
  }

  createBucket(settings) {
    return this.json('POST', '/bucket', { json: settings });
  }

  updateBucket(id, settings) {
    return this.json('PUT', `/bucket/${encodeURIComponent(id)}`, { json: settings });
  }

  getBucket(id) {
    return this.json('GET', `/bucket/${encodeURIComponent(id)}`);
  }

  emptyBucket(id) {
    return this.json('POST', `/bucket/${encodeURIComponent(id)}/empty`);
  }

  deleteBucket(id) {
    return this.json('DELETE', `/bucket/${encodeURIComponent(id)}`);
  }

  /** One page of a folder (cursor-paginated, folders grouped by the delimiter). */
  list(bucket, { prefix, cursor, limit }) {
    return this.json('POST', `/object/list-v2/${encodeURIComponent(bucket)}`, {
      json: { prefix, cursor, limit, with_delimiter: true },
    });
  }

  info(bucket, path) {
    return this.json('GET', `/object/info/${encodeURIComponent(bucket)}/${encodePath(path)}`);
  }

  async download(bucket, path) {
    const response = await this.fetch(
      'GET',
      `/object/authenticated/${encodeURIComponent(bucket)}/${encodePath(path)}`,
    );
    return response.blob();
  }

  remove(bucket, path) {
    return this.json('DELETE', `/object/${encodeURIComponent(bucket)}/${encodePath(path)}`);
  }

  move(bucket, path, destinationBucket, destinationPath) {
    return this.json('POST', '/object/move', {
      json: { bucketId: bucket, sourceKey: path, destinationBucket, destinationKey: destinationPath },
    });
  }

  copy(bucket, path, destinationBucket, destinationPath) {
    return this.json('POST', '/object/copy', {
      json: { bucketId: bucket, sourceKey: path, destinationBucket, destinationKey: destinationPath },
    });
  }

  /** An absolute signed URL, valid for `seconds`. */
  async sign(bucket, path, seconds) {
    const answer = await this.json(
      'POST',
      `/object/sign/${encodeURIComponent(bucket)}/${encodePath(path)}`,
      { json: { expiresIn: seconds } },
    );
    return new URL(this.url(answer.signedURL), location.origin).href;
  }

  checkPolicy(question) {
    return this.json('POST', '/admin/policy/check', { json: question });
  }
}
