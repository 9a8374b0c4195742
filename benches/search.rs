//! Search (`make bench`): the query behind GET /api/chat/search (`EventStore::search`, page 1 of
//! 20) over a log of mixed English and Chinese messages, on SQLite and on MySQL: p50/p95 by kind
//! of query ([`KINDS`], the costliest shapes included), for an admin (every conversation) and
//! for a user (their own). The log is filled
//! through the command layer and the index built by a replay, as `chatd replay` would.
//!
//! Sizes: `CHAT_BENCH_SEARCH_MESSAGES` (default 1000000), `CHAT_BENCH_SEARCH_QUERIES` (per kind
//! and scope, default 200); `CHAT_BENCH_SEARCH_BACKENDS` (`sqlite`, `mysql`; default both).
//! MySQL: `CHAT_BENCH_MYSQL_URL` or `CHAT_TEST_MYSQL_URL` (a scratch database is created and
//! dropped). `CHAT_BENCH_SEARCH_DATABASE` (a `sqlite:` or `mysql:` URL) measures that database
//! instead and keeps it: filled and indexed on the first run, reused as it is by the next ones.

mod support;

use std::time::Instant;
use support::*;

use chatd::commands::{CommandBus, Intent};
use chatd::store::{
    DEFAULT_SEARCH_READ_BUDGET, EventStore, RECENT_MATCHES, SearchRequest, SearchScope,
    StoreOptions,
};
use events::{ConversationCommand, NewMessage, Role};
use projections::{SearchQuery, all_projectors};

const USERS: u64 = 1000;

/// What the route asks for by default: page 1 of 20, from the newest message, with the server's
/// read budget (`CHAT_SEARCH_READ_BUDGET`, as the server reads it).
fn first_page() -> SearchRequest {
    SearchRequest {
        page: 1,
        limit: 20,
        before: None,
        read_budget: env_usize("CHAT_SEARCH_READ_BUDGET", DEFAULT_SEARCH_READ_BUDGET),
    }
}

const ENGLISH: &[&str] = &[
    "the",
    "i",
    "to",
    "my",
    "you",
    "a",
    "is",
    "and",
    "it",
    "not",
    "can",
    "for",
    "please",
    "help",
    "order",
    "account",
    "thanks",
    "payment",
    "refund",
    "app",
    "login",
    "password",
    "card",
    "how",
    "when",
    "still",
    "working",
    "error",
    "delivery",
    "package",
    "address",
    "email",
    "phone",
    "update",
    "cancel",
    "subscription",
    "charged",
    "twice",
    "invoice",
    "receipt",
    "shipping",
    "tracking",
    "number",
    "support",
    "problem",
    "issue",
    "screen",
    "crash",
    "version",
    "iphone",
    "android",
    "settings",
    "notification",
    "message",
    "photo",
    "upload",
    "download",
    "file",
    "verify",
    "code",
    "reset",
    "locked",
    "blocked",
    "balance",
    "wallet",
    "coupon",
    "discount",
    "price",
    "store",
    "return",
    "exchange",
    "size",
    "color",
    "broken",
    "damaged",
    "missing",
    "late",
    "week",
    "today",
    "tomorrow",
    "yesterday",
    "morning",
    "evening",
    "hour",
    "minute",
    "agent",
    "manager",
    "urgent",
    "waiting",
    "reply",
    "answer",
    "question",
    "review",
    "rating",
    "feedback",
    "bank",
    "transfer",
    "pending",
    "failed",
    "success",
    "confirm",
    "change",
    "name",
    "profile",
    "privacy",
    "delete",
    "data",
    "export",
    "language",
    "chinese",
    "english",
    "region",
    "country",
    "city",
    "courier",
    "warehouse",
    "stock",
    "available",
    "preorder",
    "gift",
    "points",
];

const CHINESE: &[&str] = &[
    "你好",
    "我",
    "的",
    "订单",
    "账户",
    "需要",
    "帮助",
    "谢谢",
    "退款",
    "支付",
    "密码",
    "登录",
    "问题",
    "已经",
    "还没有",
    "收到",
    "快递",
    "地址",
    "手机",
    "更新",
    "取消",
    "订阅",
    "扣款",
    "两次",
    "发票",
    "物流",
    "单号",
    "客服",
    "屏幕",
    "闪退",
    "版本",
    "设置",
    "通知",
    "消息",
    "照片",
    "上传",
    "下载",
    "文件",
    "验证码",
    "重置",
    "锁定",
    "余额",
    "钱包",
    "优惠券",
    "折扣",
    "价格",
    "退货",
    "换货",
    "尺码",
    "颜色",
    "破损",
    "丢失",
    "延迟",
    "今天",
    "明天",
    "昨天",
    "上午",
    "下午",
    "小时",
    "分钟",
    "经理",
    "紧急",
    "等待",
    "回复",
    "评价",
    "银行",
    "转账",
    "处理中",
    "失败",
    "成功",
    "确认",
    "修改",
    "名字",
    "资料",
    "隐私",
    "删除",
    "数据",
    "导出",
    "语言",
    "中文",
    "英文",
    "地区",
    "国家",
    "城市",
    "仓库",
    "库存",
    "预售",
    "礼物",
    "积分",
    "请问",
    "怎么",
    "为什么",
    "什么时候",
    "可以",
    "不能",
    "一直",
    "无法",
    "显示",
    "错误",
];

/// A small deterministic generator (xorshift), so every run writes the same log.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A Zipf-like pick: rank r with weight about 1/(r+2).
    fn zipf<'a>(&mut self, words: &[&'a str]) -> &'a str {
        let n = words.len() as f64;
        let u = (self.next() % 1_000_000) as f64 / 1_000_000.0;
        let rank = (2.0 * ((n + 2.0) / 2.0).powf(u) - 2.0) as usize;
        words[rank.min(words.len() - 1)]
    }
}

fn english(rng: &mut Rng) -> String {
    let words = 6 + rng.below(12);
    (0..words)
        .map(|_| rng.zipf(ENGLISH))
        .collect::<Vec<_>>()
        .join(" ")
}

fn chinese(rng: &mut Rng) -> String {
    let words = 4 + rng.below(10);
    let mut text: String = (0..words).map(|_| rng.zipf(CHINESE)).collect();
    if rng.below(3) == 0 {
        text.push('，');
        text.extend((0..3).map(|_| rng.zipf(CHINESE)));
    }
    text
}

/// Half English, a third Chinese, the rest both in one message.
fn message(rng: &mut Rng) -> String {
    match rng.below(6) {
        0..=2 => english(rng),
        3 | 4 => chinese(rng),
        _ => format!("{} {}", chinese(rng), english(rng)),
    }
}

/// `total` messages from 64 writers into the users' conversations, owners and admins in turn.
async fn fill(bus: &CommandBus, conversations: &[(u64, u64)], total: usize) -> anyhow::Result<()> {
    let writers = 64;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let bus = bus.clone();
        let mine: Vec<(u64, u64)> = conversations
            .iter()
            .copied()
            .skip(w)
            .step_by(writers)
            .collect();
        let count = total / writers + usize::from(w < total % writers);
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (w as u64 + 1));
            let admin = actor(10_000 + w as u64, Role::Admin);
            for n in 0..count {
                let (conversation, user_id) = mine[n % mine.len()];
                let sender = if n % 2 == 0 {
                    actor(user_id, Role::User)
                } else {
                    admin.clone()
                };
                let command = ConversationCommand::SendMessage {
                    actor: sender.clone(),
                    message: NewMessage::text(message(&mut rng)),
                };
                bus.execute(Intent::On(conversation, command), metadata(&sender))
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// The kinds of query measured: what people type (a content word, two of them, two or four
/// characters out of a Chinese sentence, one character beside a word), and the costliest shapes
/// a client can send: 8 single Chinese characters or 8 words (the most terms a query may have),
/// 16 of either (refused), a long Chinese sentence, single Latin letters and digits.
const KINDS: [&str; 11] = [
    "one word",
    "two words",
    "2 Chinese chars",
    "4 Chinese chars",
    "1 char + word",
    "8 single chars",
    "8 words",
    "16 single chars",
    "16 words",
    "long sentence",
    "single letters",
];

/// Chinese characters in the order a generated sentence has them.
fn chinese_chars(rng: &mut Rng) -> Vec<char> {
    chinese(rng)
        .chars()
        .filter(|c| projections::search_is_cjk(*c))
        .collect()
}

/// A query of `kind`, drawn like a person (or a client probing the cost) would.
fn query(kind: &str, rng: &mut Rng) -> String {
    let pick = |rng: &mut Rng| ENGLISH[rng.below(ENGLISH.len())];
    match kind {
        "one word" => pick(rng).to_string(),
        "two words" => format!("{} {}", pick(rng), pick(rng)),
        "1 char + word" => {
            let sentence = chinese_chars(rng);
            format!("{} {}", sentence[rng.below(sentence.len())], pick(rng))
        }
        "8 single chars" | "16 single chars" => {
            let count = if kind.starts_with('8') { 8 } else { 16 };
            let mut chars: Vec<char> = Vec::new();
            while chars.len() < count {
                for c in chinese_chars(rng) {
                    if chars.len() < count && !chars.contains(&c) {
                        chars.push(c);
                    }
                }
            }
            chars
                .iter()
                .map(char::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        }
        "8 words" | "16 words" => {
            let count = if kind.starts_with('8') { 8 } else { 16 };
            let mut words: Vec<&str> = Vec::new();
            while words.len() < count {
                let word = pick(rng);
                if !words.contains(&word) {
                    words.push(word);
                }
            }
            words.join(" ")
        }
        // Pasted from a message: up to 16 characters of a generated Chinese sentence.
        "long sentence" => chinese_chars(rng).into_iter().take(16).collect(),
        "single letters" => {
            let letters = b"aix7z0";
            (0..4)
                .map(|_| (letters[rng.below(letters.len())] as char).to_string())
                .collect::<Vec<_>>()
                .join(" ")
        }
        _ => {
            let len = if kind == "2 Chinese chars" { 2 } else { 4 };
            let sentence = chinese_chars(rng);
            let start = rng.below(sentence.len().saturating_sub(len) + 1);
            sentence[start..(start + len).min(sentence.len())]
                .iter()
                .collect()
        }
    }
}

async fn bench_backend(name: &str, url: &str) -> anyhow::Result<()> {
    let messages = env_usize("CHAT_BENCH_SEARCH_MESSAGES", 1_000_000);
    let queries = env_usize("CHAT_BENCH_SEARCH_QUERIES", 200);
    let mut options = StoreOptions::new(url);
    options.max_connections = 16;
    let store = EventStore::connect(&options).await?;
    store.migrate().await?;
    println!("{name}:");
    if store.head_position().await? == 0 {
        fill_and_index(&store, messages).await?;
    } else {
        println!(
            "  reusing the {} events already in the log",
            store.head_position().await?
        );
    }
    measure(&store, queries).await?;
    store.close().await;
    Ok(())
}

/// Writes `messages` messages through the command layer, then builds every read table by a replay.
async fn fill_and_index(store: &EventStore, messages: usize) -> anyhow::Result<()> {
    let bus = CommandBus::start(store.clone(), 10_000).await?;

    let mut conversations = Vec::new();
    for id in 1..=USERS {
        let user = actor(id, Role::User);
        let intent = Intent::OpenOrContinue {
            actor: user.clone(),
            message: Some(NewMessage::text("hello 你好")),
        };
        let committed = bus.execute(intent, metadata(&user)).await?;
        conversations.push((committed.conversation_id, id));
    }
    let started = Instant::now();
    fill(
        &bus,
        &conversations,
        messages.saturating_sub(USERS as usize),
    )
    .await?;
    println!(
        "  filled the log with {messages} messages in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    projections::replay(store, &all_projectors(), projections::REPLAY_BATCH, |_| {}).await?;
    println!(
        "  replay of every projector (the index included): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// p50/p95/max of every kind of query, for an admin and for a user.
async fn measure(store: &EventStore, queries: usize) -> anyhow::Result<()> {
    // A server in steady state: the replay's writes flushed, the index's hot pages cached.
    let mut rng = Rng(7);
    for kind in KINDS {
        for _ in 0..queries.min(50) {
            if let Ok(parsed) = SearchQuery::parse(&query(kind, &mut rng)) {
                store
                    .search(&SearchScope::All, &parsed, &first_page())
                    .await?;
            }
        }
    }
    let mut rng = Rng(42);
    // `CHAT_BENCH_SEARCH_KINDS` (names from `KINDS`, comma-separated) measures only those.
    let only = std::env::var("CHAT_BENCH_SEARCH_KINDS").unwrap_or_default();
    let measured = |kind: &str| only.is_empty() || only.split(',').any(|k| k.trim() == kind);
    for kind in KINDS {
        for who in ["admin", "user"] {
            let mut latencies = Vec::with_capacity(queries);
            let mut found = 0u64;
            let mut refused = 0usize;
            // Searches that stopped at the read budget with fewer than 1,000 matches.
            let mut stopped = 0usize;
            for _ in 0..queries {
                let q = query(kind, &mut rng);
                let scope = if who == "admin" {
                    SearchScope::All
                } else {
                    SearchScope::OwnedBy(1 + rng.below(USERS as usize) as u64)
                };
                // Drawn either way, so that each kind's queries stay the same.
                if !measured(kind) {
                    continue;
                }
                // The route answers 400 to a query the parser refuses, before any SQL.
                let Ok(parsed) = SearchQuery::parse(&q) else {
                    refused += 1;
                    continue;
                };
                let started = Instant::now();
                let results = store.search(&scope, &parsed, &first_page()).await?;
                latencies.push(started.elapsed());
                found += results.total;
                if results.older_than.is_some() && results.total < u64::from(RECENT_MATCHES) {
                    stopped += 1;
                }
            }
            if !measured(kind) {
                continue;
            }
            if latencies.is_empty() {
                println!("  {kind:<16} {who:<5}  every query refused (400)");
                continue;
            }
            latencies.sort();
            let mut refusals = if refused > 0 {
                format!(", {refused} of {queries} refused")
            } else {
                String::new()
            };
            if stopped > 0 {
                refusals.push_str(&format!(", {stopped} stopped at the read budget"));
            }
            println!(
                "  {kind:<16} {who:<5}  p50 {:>7.2} ms   p95 {:>7.2} ms   max {:>7.2} ms   ({} matches on average{refusals})",
                percentile(&latencies, 0.50),
                percentile(&latencies, 0.95),
                percentile(&latencies, 1.0),
                found / latencies.len() as u64,
            );
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `CHAT_BENCH_SEARCH_BACKENDS=mysql` (or `sqlite`) runs one back end only.
    let backends = std::env::var("CHAT_BENCH_SEARCH_BACKENDS").unwrap_or_default();
    let wants = |name: &str| backends.is_empty() || backends.split(',').any(|b| b.trim() == name);
    if let Ok(url) = std::env::var("CHAT_BENCH_SEARCH_DATABASE") {
        let name = url.split(':').next().unwrap_or("database").to_string();
        return bench_backend(&name, &url).await;
    }
    if wants("sqlite") {
        let sqlite = ScratchSqlite::new("search");
        bench_backend("sqlite", &sqlite.url).await?;
    }
    if wants("mysql") {
        let mysql = ScratchMysql::new("search").await?;
        let result = bench_backend("mysql", &mysql.url).await;
        mysql.drop().await?;
        result?;
    }
    Ok(())
}
