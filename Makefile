# Thin wrappers; each target says what it runs.
CHAT_TEST_MYSQL_URL ?= mysql://root@127.0.0.1:3306/test
CHAT_TEST_REDIS_URL ?= redis://127.0.0.1:6379/
export CHAT_TEST_MYSQL_URL CHAT_TEST_REDIS_URL
# The integration tests are one binary whose tests all run in parallel, and a MySQL-backed test
# may hold 48 connections or more (its store's pool, its servers'); four at a time took MariaDB
# to 139 of its default 151. Two at a time, whatever the number of cores.
RUST_TEST_THREADS ?= 2
export RUST_TEST_THREADS

.PHONY: run test test-deps lint bench bench-compare ci fmt fuzz chaos chaos-short

run: ## the server on the embedded default (SQLite in ./data)
	cargo run --release -- serve

test: test-deps ## every suite, on SQLite and on MySQL (with Redis)
	cargo test --workspace

test-deps: ## the real clients the tests drive (python-socketio, schemathesis; Playwright and socket.io-client from npm), when missing
	@python3 -c "import socketio, requests, schemathesis, openapi_spec_validator" 2>/dev/null || \
		PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q -r tests/requirements.txt
	@test -d tests/node_modules/playwright-core -a -d tests/node_modules/socket.io-client -a -d tests/node_modules/@asyncapi/parser || \
		(cd tests && npm ci --no-audit --no-fund)

lint: ## formatting and clippy, warnings are errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

bench: ## append throughput, projection lag, replay speed, REST throughput; SQLite and MySQL
	cargo bench --bench append
	cargo bench --bench read_side
	cargo bench --bench archive
	cargo bench --bench import
	cargo bench --bench http
	cargo bench --bench sockets
	cargo bench --bench search
	cargo bench --bench analytics
	cargo bench --bench audit
	cargo bench --bench push

# The same load clients against chatd (release, MariaDB + Redis) and the spec's plain Node.js stack
# (benches/node-peer), one after the other in one run: each row prints both and the ratio.
RELEASE_BIN = $(or $(CARGO_TARGET_DIR),target)/release/chatd
COMPARE = benches/node-peer/compare.sh --chatd $(RELEASE_BIN)
IDLE_CONNECTIONS ?= 10000

bench-compare: ## chatd beside the Node.js stack: socket latency at 1,000 and 2,000 msg/s, REST rate (wrk), idle memory
	cargo build --release --bin chatd
	$(COMPARE) socket --convs 500 --rate 1000 --secs 15
	$(COMPARE) socket --convs 500 --rate 2000 --secs 15
	$(COMPARE) rest
	$(COMPARE) idle --idle $(IDLE_CONNECTIONS)

FUZZ_SECONDS ?= 60
FUZZ_TARGETS = socket_packet auth_headers multipart_upload
fuzz: ## every fuzz target for FUZZ_SECONDS each (cargo-fuzz, installed when missing); a panic fails
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	@for target in $(FUZZ_TARGETS); do \
		echo "fuzz: $$target for $(FUZZ_SECONDS) s"; \
		RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none $$target -- \
			-max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 || exit 1; \
	done

# The crash harness runs the debug binary (wherever CARGO_TARGET_DIR puts it) against its own
# MariaDB and Redis; see tests/chaos/chaos.py for its flags (seed, kills, users, --keep).
CHATD_BIN ?= $(or $(CARGO_TARGET_DIR),target)/debug/chatd
CHAOS_FLAGS ?=

chaos-short: test-deps ## crash harness, short form (CI): 24 chatd SIGKILLs, 3 of mariadbd, a few minutes
	cargo build --bin chatd
	python3 tests/chaos/chaos.py --chatd $(CHATD_BIN) --chatd-kills 24 --mariadb-kills 3 $(CHAOS_FLAGS)

chaos: test-deps ## crash harness, long form: 100 chatd SIGKILLs, 6 of mariadbd, more users
	cargo build --bin chatd
	python3 tests/chaos/chaos.py --chatd $(CHATD_BIN) --chatd-kills 100 --mariadb-kills 6 --users 40 $(CHAOS_FLAGS)

ci: ## what CI runs
	.ci/run
