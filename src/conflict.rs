//! Read-modify-write with a resourceVersion precondition: when the write meets a newer version
//! (409 Conflict), the object is read again and the change made again on what is there now, so
//! that neither someone else's edit nor ours is lost. One loop for every such write.

use crate::error::Error;
use std::future::Future;

/// Why one attempt did not finish.
#[derive(Debug)]
pub enum Failed {
    /// The object changed (or went) since it was read: read it again and retry.
    Conflict,
    /// Anything else: no retry here.
    Error(Error),
}

/// Maps a failed write: 409 Conflict is retried, any other error is classified by `classify`.
pub fn conflict_or(classify: impl FnOnce(kube::Error) -> Error) -> impl FnOnce(kube::Error) -> Failed {
    move |e| match e {
        kube::Error::Api(ref status) if status.code == 409 => Failed::Conflict,
        e => Failed::Error(classify(e)),
    }
}

/// Runs `attempt` on `state` (the object as last read) at most `attempts` times; after each
/// conflict `reread` gives the state for the next attempt. `attempt` may also finish without
/// writing (nothing to change, or nothing it may change). Gives up with [`Error::Conflict`].
///
/// (Plain closures returning futures, not async closures: the futures of those are not known to
/// be `Send` for every lifetime, which kube-runtime's controller needs of a reconcile.)
pub async fn retry_on_conflict<S, T, A, R>(
    attempts: usize,
    (resource, name): (&'static str, &str),
    mut state: S,
    mut attempt: impl FnMut(S) -> A,
    mut reread: impl FnMut() -> R,
) -> Result<T, Error>
where
    A: Future<Output = Result<T, Failed>>,
    R: Future<Output = Result<S, Error>>,
{
    for left in (0..attempts).rev() {
        match attempt(state).await {
            Ok(done) => return Ok(done),
            Err(Failed::Error(e)) => return Err(e),
            Err(Failed::Conflict) if left > 0 => state = reread().await?,
            Err(Failed::Conflict) => break,
        }
    }
    Err(Error::Conflict { resource, name: name.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(kube::core::Status::failure("test", "Test").with_code(code).boxed())
    }

    /// Runs the loop on writes that answer `answers` in turn; returns the result, the writes
    /// attempted and the re-reads made.
    async fn run(answers: &[Result<u32, u16>]) -> (Result<u32, Error>, usize, usize) {
        let (writes, rereads) = (Cell::new(0), Cell::new(0));
        let result = retry_on_conflict(
            3,
            ("secrets", "creds"),
            0,
            |version: u32| {
                writes.set(writes.get() + 1);
                assert_eq!(version as usize, rereads.get(), "each attempt works on the latest read");
                let answer = answers[writes.get() - 1];
                async move {
                    answer.map_err(|code| conflict_or(Error::kube("update", "secrets", "creds"))(api(code)))
                }
            },
            || {
                rereads.set(rereads.get() + 1);
                std::future::ready(Ok(rereads.get() as u32))
            },
        )
        .await;
        (result, writes.get(), rereads.get())
    }

    #[tokio::test]
    async fn a_conflict_is_read_again_and_retried() {
        let (result, writes, rereads) = run(&[Err(409), Err(409), Ok(7)]).await;
        assert_eq!((result.unwrap(), writes, rereads), (7, 3, 2));
    }

    #[tokio::test]
    async fn other_errors_are_not_retried() {
        for code in [404, 422, 500, 503] {
            let (result, writes, rereads) = run(&[Err(code), Ok(7)]).await;
            assert!(matches!(result, Err(Error::Kube { verb: "update", .. })), "HTTP {code}: {result:?}");
            assert_eq!((writes, rereads), (1, 0), "HTTP {code}");
        }
    }

    #[tokio::test]
    async fn conflicts_without_end_give_up_after_the_attempts() {
        let (result, writes, rereads) = run(&[Err(409), Err(409), Err(409), Ok(7)]).await;
        assert!(matches!(result, Err(Error::Conflict { resource: "secrets", .. })), "{result:?}");
        assert_eq!((writes, rereads), (3, 2));
    }
}
