//! Rate limits: exact under concurrency, per caller and kind, in this process and in Redis, and
//! failing closed when Redis is gone.

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatd::config::Config;
use chatd::limits::{LimitKind, Limited, RateLimiter};
use rand::Rng;
use support::redis;

fn defaults() -> Config {
    Config::from_lookup(|_| None).expect("config")
}

/// A caller name no other test run uses.
fn unique_caller(label: &str) -> String {
    format!("test-{label}-{:016x}", rand::thread_rng().r#gen::<u64>())
}

async fn burst(
    limiter: Arc<RateLimiter>,
    kind: LimitKind,
    caller: &str,
    n: usize,
) -> Vec<Result<(), Limited>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let limiter = limiter.clone();
            let caller = caller.to_string();
            tokio::spawn(async move { limiter.check(kind, &caller).await })
        })
        .collect();
    let mut results = Vec::with_capacity(n);
    for task in tasks {
        results.push(task.await.expect("check task"));
    }
    results
}

fn assert_exactly(results: &[Result<(), Limited>], allowed: usize) {
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, allowed, "{results:?}");
    for result in results.iter().filter(|r| r.is_err()) {
        match result {
            Err(Limited::Over { retry_after_secs }) => {
                assert!((1..=60).contains(retry_after_secs), "{result:?}")
            }
            other => panic!("expected Over, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn a_burst_of_200_in_process_lets_exactly_60_messages_through() {
    let limiter = Arc::new(RateLimiter::new(&defaults(), None));
    let caller = unique_caller("local-burst");

    let results = burst(limiter, LimitKind::Messages, &caller, 200).await;

    assert_exactly(&results, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn a_burst_of_200_in_redis_lets_exactly_60_messages_through() {
    let limiter = Arc::new(RateLimiter::new(&defaults(), Some(redis().await)));
    let caller = unique_caller("redis-burst");

    let results = burst(limiter, LimitKind::Messages, &caller, 200).await;

    assert_exactly(&results, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn two_limiters_on_one_redis_share_the_count_like_two_nodes() {
    let connection = redis().await;
    let node_a = Arc::new(RateLimiter::new(&defaults(), Some(connection)));
    let node_b = Arc::new(RateLimiter::new(&defaults(), Some(redis().await)));
    let caller = unique_caller("two-nodes");

    let (a, b) = tokio::join!(
        burst(node_a, LimitKind::Uploads, &caller, 15),
        burst(node_b, LimitKind::Uploads, &caller, 15)
    );

    let all: Vec<_> = a.into_iter().chain(b).collect();
    assert_exactly(&all, 10);
}

async fn callers_and_kinds_are_independent(limiter: RateLimiter) {
    let alice = unique_caller("alice");
    let bob = unique_caller("bob");
    for _ in 0..10 {
        limiter
            .check(LimitKind::Typing, &alice)
            .await
            .expect("within limit");
    }
    assert!(matches!(
        limiter.check(LimitKind::Typing, &alice).await,
        Err(Limited::Over { .. })
    ));

    assert_eq!(limiter.check(LimitKind::Typing, &bob).await, Ok(()));
    assert_eq!(limiter.check(LimitKind::Messages, &alice).await, Ok(()));
    assert_eq!(limiter.check(LimitKind::Uploads, &alice).await, Ok(()));
}

#[tokio::test]
async fn different_callers_and_kinds_count_separately_in_process() {
    callers_and_kinds_are_independent(RateLimiter::new(&defaults(), None)).await;
}

#[tokio::test]
async fn different_callers_and_kinds_count_separately_in_redis() {
    callers_and_kinds_are_independent(RateLimiter::new(&defaults(), Some(redis().await))).await;
}

#[tokio::test]
async fn the_limits_come_from_configuration() {
    let config = Config::from_lookup(|name| match name {
        "CHAT_LIMIT_MESSAGES_PER_MIN" => Some("100000".into()),
        "CHAT_LIMIT_UPLOADS_PER_MIN" => Some("2".into()),
        "CHAT_LIMIT_TYPING_PER_MIN" => Some("3".into()),
        _ => None,
    })
    .expect("config");
    let limiter = RateLimiter::new(&config, None);
    let caller = unique_caller("configured");

    assert_eq!(limiter.limit(LimitKind::Messages), 100_000);
    assert_eq!(limiter.limit(LimitKind::Uploads), 2);
    assert_eq!(limiter.limit(LimitKind::Typing), 3);
    let mut ok = 0;
    for _ in 0..5 {
        if limiter.check(LimitKind::Typing, &caller).await.is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 3);
}

#[tokio::test]
async fn the_first_refusal_in_a_fresh_window_asks_for_about_a_minute() {
    let limiter = RateLimiter::new(&defaults(), Some(redis().await));
    let caller = unique_caller("retry-after");
    for _ in 0..10 {
        limiter
            .check(LimitKind::Uploads, &caller)
            .await
            .expect("within limit");
    }

    let refused = limiter.check(LimitKind::Uploads, &caller).await;

    match refused {
        Err(Limited::Over { retry_after_secs }) => {
            assert!((55..=60).contains(&retry_after_secs), "{retry_after_secs}")
        }
        other => panic!("expected Over, got {other:?}"),
    }
}

#[tokio::test]
async fn a_redis_on_a_closed_port_makes_the_limiter_unavailable_within_a_second_or_so() {
    let dead = chatd::redis::connect_lazy("redis://127.0.0.1:1/").expect("lazy manager");
    let limiter = RateLimiter::new(&defaults(), Some(dead));

    for _ in 0..2 {
        let started = Instant::now();
        let result = limiter.check(LimitKind::Messages, "user:1").await;
        let took = started.elapsed();

        assert_eq!(result, Err(Limited::Unavailable));
        assert!(took < Duration::from_millis(1300), "took {took:?}");
    }
}

#[tokio::test]
async fn a_redis_that_accepts_but_never_answers_makes_the_limiter_unavailable_within_about_a_second()
 {
    // A hung Redis: the TCP connection opens, nothing ever comes back.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let hung = chatd::redis::connect_lazy(&format!("redis://{address}/")).expect("lazy manager");
    let limiter = RateLimiter::new(&defaults(), Some(hung));

    for _ in 0..2 {
        let started = Instant::now();
        let result = limiter.check(LimitKind::Typing, "user:1").await;
        let took = started.elapsed();

        assert_eq!(result, Err(Limited::Unavailable));
        assert!(took < Duration::from_millis(1500), "took {took:?}");
    }
}

#[tokio::test]
async fn connecting_to_a_closed_port_fails_at_once_instead_of_hanging() {
    let started = Instant::now();

    let result = chatd::redis::connect("redis://127.0.0.1:1/").await;

    assert!(result.is_err());
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "took {:?}",
        started.elapsed()
    );
}
