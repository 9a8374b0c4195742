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

/// Both kinds of counter: in this process, and in Redis.
async fn each_limiter(config: &Config) -> Vec<(&'static str, RateLimiter)> {
    vec![
        ("in process", RateLimiter::new(config, None)),
        ("redis", RateLimiter::new(config, Some(redis().await))),
    ]
}

async fn allowed(limiter: &RateLimiter, kind: LimitKind, caller: &str, n: usize) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        if limiter.check(kind, caller).await.is_ok() {
            ok += 1;
        }
    }
    ok
}

#[tokio::test]
async fn no_span_of_one_window_holds_more_than_the_limit_even_around_a_windows_edge() {
    // A 2 s window, 5 per window. One action opens it, four more come just before 2 s have
    // passed: a fixed window would start afresh at 2 s and let five more through at once,
    // nine within half a second. A sliding one frees only the slot of the first action.
    let window = Duration::from_secs(2);
    let config = Config::from_lookup(|name| {
        (name == "CHAT_LIMIT_MESSAGES_PER_MIN").then(|| "5".to_string())
    })
    .expect("config");
    for (name, limiter) in each_limiter(&config).await {
        let limiter = limiter.with_window(window);
        let caller = unique_caller("edge");
        let opened = Instant::now();
        assert_eq!(allowed(&limiter, LimitKind::Messages, &caller, 1).await, 1);
        tokio::time::sleep_until((opened + Duration::from_millis(1700)).into()).await;
        assert_eq!(
            allowed(&limiter, LimitKind::Messages, &caller, 4).await,
            4,
            "{name}"
        );
        tokio::time::sleep_until((opened + Duration::from_millis(2300)).into()).await;

        assert_eq!(
            allowed(&limiter, LimitKind::Messages, &caller, 5).await,
            1,
            "{name}: only the first action has left the window"
        );
        match limiter.check(LimitKind::Messages, &caller).await {
            Err(Limited::Over { retry_after_secs }) => assert_eq!(retry_after_secs, 2, "{name}"),
            other => panic!("{name}: expected Over, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_typing_stop_after_a_start_is_free_and_a_lone_stop_counts() {
    let config =
        Config::from_lookup(|name| (name == "CHAT_LIMIT_TYPING_PER_MIN").then(|| "3".to_string()))
            .expect("config");
    for (name, limiter) in each_limiter(&config).await {
        let caller = unique_caller("typing");
        for _ in 0..3 {
            assert_eq!(
                limiter.check_typing(&caller, 7, true).await,
                Ok(()),
                "{name}"
            );
            assert_eq!(
                limiter.check_typing(&caller, 7, false).await,
                Ok(()),
                "{name}"
            );
        }
        assert!(
            limiter.check_typing(&caller, 7, false).await.is_err(),
            "{name}: a stop without a start counts, and the limit is used"
        );

        let other = unique_caller("lone-stops");
        let stops = (0..5).map(|_| limiter.check_typing(&other, 7, false));
        let results = futures::future::join_all(stops).await;
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3, "{name}");

        // A start's pass is for its own conversation only.
        let third = unique_caller("elsewhere");
        assert_eq!(limiter.check_typing(&third, 1, true).await, Ok(()));
        for _ in 0..2 {
            assert_eq!(
                limiter.check_typing(&third, 2, false).await,
                Ok(()),
                "{name}"
            );
        }
        assert!(
            limiter.check_typing(&third, 2, false).await.is_err(),
            "{name}"
        );
        assert_eq!(
            limiter.check_typing(&third, 1, false).await,
            Ok(()),
            "{name}"
        );
    }
}

#[tokio::test]
async fn deployments_sharing_a_redis_count_apart_under_their_own_prefixes() {
    let prefixed = |prefix: &str| {
        let prefix = prefix.to_string();
        Config::from_lookup(move |name| match name {
            "CHAT_REDIS_PREFIX" => Some(prefix.clone()),
            "CHAT_LIMIT_UPLOADS_PER_MIN" => Some("2".to_string()),
            _ => None,
        })
        .expect("config")
    };
    let suffix = unique_caller("deployment");
    let (a, b) = (format!("a-{suffix}"), format!("b-{suffix}"));
    let first = RateLimiter::new(&prefixed(&a), Some(redis().await));
    let second = RateLimiter::new(&prefixed(&b), Some(redis().await));
    let caller = "user:1";

    assert_eq!(allowed(&first, LimitKind::Uploads, caller, 3).await, 2);
    assert_eq!(allowed(&second, LimitKind::Uploads, caller, 3).await, 2);

    let mut connection = redis().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("*{suffix}*"))
        .query_async(&mut connection)
        .await
        .expect("keys");
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys.iter()
            .all(|key| key.starts_with(&format!("{a}:")) || key.starts_with(&format!("{b}:"))),
        "every key under its deployment's prefix: {keys:?}"
    );
}
