//! Reads and discards what is left of a request body that a handler stopped reading.
//!
//! Handlers answer before the whole body has arrived whenever they can: a key that already
//! exists (409), a policy that denies (403), a size over the limit (413). If the rest of the body
//! were simply dropped, the connection would be closed while the client is still sending; the
//! kernel then answers the client's next segments with a reset, which can destroy our response
//! before the client has read it, and the client reports a broken pipe instead of the reason.
//! Node's HTTP server (under Supabase Storage) reads such leftovers, and clients rely on it, so
//! we do the same in the background, within bounds so no client can keep us reading forever.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::header::EXPECT;
use futures::StreamExt;
use http_body::{Frame, SizeHint};

/// At most this much of an abandoned body is read; past it the connection is closed.
const DRAIN_LIMIT: u64 = 32 * 1024 * 1024;
/// At most this long is spent reading an abandoned body.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Wraps every request's body in [`DrainOnDrop`].
pub async fn drain_unread_bodies(request: Request) -> Request {
    let expects_continue = request
        .headers()
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    request.map(|body| {
        Body::new(DrainOnDrop {
            inner: Some(body),
            expects_continue,
            polled: false,
        })
    })
}

/// A request body that, when dropped unfinished, is drained on a background task.
pub struct DrainOnDrop {
    inner: Option<Body>,
    /// The client waits for `100 Continue` before sending the body.
    expects_continue: bool,
    /// Whether anything asked for the body (which is what makes hyper send `100 Continue`).
    polled: bool,
}

impl HttpBody for DrainOnDrop {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        this.polled = true;
        match this.inner.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for DrainOnDrop {
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else {
            return;
        };
        // A client still waiting for `100 Continue` has sent nothing to drain; reading now
        // would only make it send a body nobody wants.
        if body.is_end_stream() || (self.expects_continue && !self.polled) {
            return;
        }
        // Holding the body keeps hyper reading the connection after the response is written.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(drain(body));
        }
    }
}

async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    let mut read = 0u64;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len() as u64;
            if read > DRAIN_LIMIT {
                tracing::debug!(read, "abandoned request body too large to drain; closing");
                return;
            }
        }
    })
    .await;
}
