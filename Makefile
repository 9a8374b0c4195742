# Thin wrappers; each target says what it runs.
CHAT_TEST_MYSQL_URL ?= mysql://root@127.0.0.1:3306/test
CHAT_TEST_REDIS_URL ?= redis://127.0.0.1:6379/
export CHAT_TEST_MYSQL_URL CHAT_TEST_REDIS_URL

.PHONY: run test lint bench ci fmt

run: ## the server on the embedded default (SQLite in ./data)
	cargo run --release -- serve

test: ## every suite, on SQLite and on MySQL
	cargo test --workspace

lint: ## formatting and clippy, warnings are errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

bench: ## append throughput, projection lag, replay speed, REST throughput; SQLite and MySQL
	cargo bench --bench append
	cargo bench --bench read_side
	cargo bench --bench http

ci: ## what CI runs
	.ci/run
