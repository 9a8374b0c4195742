//! The one bootstrap path, shared by `main` and the tests: connect, migrate, start the appender,
//! bind the listener (port 0 works), serve until shut down.

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use projections::{Projections, RuntimeOptions, all_projectors};

use crate::app::App;
use crate::commands::CommandBus;
use crate::config::Config;
use crate::http;
use crate::node::LeaseHolder;
use crate::store::{EventStore, redact_url};

pub struct Application {
    listener: TcpListener,
    state: App,
    realtime: crate::realtime::Realtime,
    socket_events: Arc<crate::realtime::InFlightEvents>,
    add_socket_layer: Box<dyn FnOnce(axum::Router) -> axum::Router + Send>,
    stop_broadcaster: tokio::sync::watch::Sender<bool>,
    send_buffer_bytes: usize,
    /// Automatic assignment's follower, when it is on: awaited at shutdown so that it hands its
    /// lease back before the pool closes.
    assigner: Option<tokio::task::JoinHandle<()>>,
    retention: Option<tokio::task::JoinHandle<()>>,
    push: Option<crate::push::PushService>,
    /// Who sees the operators' details of `/readyz`.
    operators: http::health::OperatorAccess,
    /// `CHAT_TRUSTED_PROXIES`.
    trusted_proxies: Arc<crate::peer::TrustedProxies>,
    /// `CHAT_METRICS_BIND`'s listener: `/metrics` (and the health routes) there, not on the API's
    /// port.
    metrics_listener: Option<TcpListener>,
    /// Held while the process lives: no other process takes its lease holder's name.
    _lease_holder: LeaseHolder,
}

impl Application {
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let store = open_store(config).await?;
        let commands = CommandBus::start(store.clone(), config.aggregate_cache)
            .await
            .context("starting the command layer")?;
        let lease_holder = LeaseHolder::claim(config.node_id.as_deref(), &config.data_dir);
        let node_id = lease_holder.name.clone();
        let projections = Arc::new(Projections::start(
            Arc::new(store.clone()),
            all_projectors(),
            commands.committed_head(),
            RuntimeOptions::new(node_id.clone()),
        ));
        let redis = match &config.redis_url {
            Some(url) => Some(
                crate::redis::connect(url)
                    .await
                    .map_err(|error| anyhow::anyhow!(crate::problems::redis(url, &error)))?,
            ),
            None => None,
        };
        let auth = Arc::new(crate::auth::Auth::new(config, &store, redis.clone()).await?);
        match auth.app_secret_source() {
            crate::auth::SecretSource::Generated(file) => {
                // Shown once, on the start that made it, on stderr (logs go to stdout), never in
                // a log line.
                eprintln!(
                    "chatd: generated an app secret, kept in {} (shown this once): {}",
                    file.display(),
                    auth.app_secret()
                );
            }
            crate::auth::SecretSource::Kept(file) => {
                tracing::info!(file = %file.display(), "app secret read from the data directory");
            }
            crate::auth::SecretSource::Configured => {}
        }
        crate::metrics::handle();
        let limits = Arc::new(crate::limits::RateLimiter::new(config, redis.clone()));
        let listener = TcpListener::bind(config.listen_addr())
            .await
            .with_context(|| format!("binding {}", config.listen_addr()))?;
        let metrics_listener = match config.metrics_bind {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .with_context(|| format!("binding CHAT_METRICS_BIND {address}"))?,
            ),
            None => None,
        };
        let public_url = match &config.public_url {
            Some(url) => url.clone(),
            None => format!("http://{}", listener.local_addr()?),
        };
        let attachments = Arc::new(crate::files::Attachments::new(
            crate::files::FileStore::from_config(config)?,
            crate::files::FileLinks::new(&public_url, auth.app_secret()),
            config,
        ));
        let presence = Arc::new(match &redis {
            Some(connection) => crate::presence::Presence::with_redis(
                connection.clone(),
                &config.redis_prefix,
                &crate::node::process_name(),
                config.presence_ttl,
            ),
            None => crate::presence::Presence::new(),
        });
        let (announced, announced_rx) = tokio::sync::watch::channel(0);
        let state = App {
            store,
            commands,
            projections,
            auth,
            limits,
            redis,
            read_your_writes: config.read_your_writes_timeout,
            last_writes: Arc::default(),
            announced: announced_rx,
            attachments,
            public_https: public_url.starts_with("https://"),
            started: Arc::new(std::time::Instant::now()),
            presence,
            push_max_devices: config.push.max_devices,
            search_read_budget: config.search_read_budget,
            edit_window_secs: config.edit_window_secs,
        };
        let socket_events = Arc::new(crate::realtime::InFlightEvents::default());
        let (realtime, add_socket_layer) =
            crate::realtime::build(config, state.clone(), socket_events.clone())
                .await
                .context("starting Socket.IO")?;
        let (stop_broadcaster, broadcaster_stops) = tokio::sync::watch::channel(false);
        crate::realtime::watch_sessions(realtime.clone(), state.clone(), broadcaster_stops.clone());
        crate::realtime::announce_presence(
            realtime.clone(),
            state.presence.clone(),
            broadcaster_stops.clone(),
        );
        state.presence.start(broadcaster_stops.clone());
        let assigner = config.auto_assign.then(|| {
            crate::assignment::start(
                state.clone(),
                node_id.clone(),
                config.assign_capacity,
                broadcaster_stops.clone(),
            )
        });
        let retention = config.retention_days.map(|days| {
            crate::retention::start(
                state.clone(),
                node_id.clone(),
                days,
                broadcaster_stops.clone(),
            )
        });
        // Read here, not in the broadcaster's task: were the database to fail just then, the
        // task would start later from a newer head, and a socket that joined meanwhile would
        // miss every event in between (its join answered up to an older head).
        let broadcast_from = state
            .store
            .head_position()
            .await
            .context("reading the log's head")?;
        crate::realtime::Broadcaster::start(
            broadcast_from,
            state.store.clone(),
            realtime.clone(),
            state.attachments.clone(),
            state.commands.committed_batches(),
            announced,
            broadcaster_stops,
        );
        let push = crate::push::PushService::start(
            &config.push,
            state.store.clone(),
            state.presence.clone(),
            state.projections.clone(),
            state.commands.committed_head(),
            node_id,
        )
        .await
        .context("starting push notifications")?;
        Ok(Application {
            _lease_holder: lease_holder,
            listener,
            state,
            realtime,
            socket_events,
            add_socket_layer,
            stop_broadcaster,
            send_buffer_bytes: config.sockets.send_buffer_bytes,
            assigner,
            retention,
            push,
            operators: http::health::OperatorAccess::new(config.ops_token.as_deref()),
            trusted_proxies: Arc::new(config.trusted_proxies.clone()),
            metrics_listener,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Where `/metrics` is served when `CHAT_METRICS_BIND` moved it off the API's port.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    pub fn state(&self) -> &App {
        &self.state
    }

    /// The Socket.IO server.
    pub fn realtime(&self) -> &crate::realtime::Realtime {
        &self.realtime
    }

    /// Serves until `shutdown` resolves, then finishes the requests in flight.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let store = self.state.store.clone();
        let projections = self.state.projections.clone();
        let realtime = self.realtime;
        let fanout: Arc<dyn crate::app::Fanout> = Arc::new(realtime.clone());
        let metrics_on_api_port = self.metrics_listener.is_none();
        let metrics_server = self.metrics_listener.map(|listener| {
            let routes = http::operations_router(self.state.clone(), self.operators.clone());
            tokio::spawn(async move {
                let service = routes.into_make_service_with_connect_info::<std::net::SocketAddr>();
                if let Err(error) = axum::serve(listener, service).await {
                    tracing::error!(%error, "serving CHAT_METRICS_BIND stopped");
                }
            })
        });
        let routes = http::router(self.state, fanout, self.operators, metrics_on_api_port);
        let app = (self.add_socket_layer)(routes)
            .layer(axum::middleware::from_fn(
                crate::realtime::detach_request_head,
            ))
            .layer(axum::middleware::from_fn_with_state(
                self.trusted_proxies,
                http::observe::client_address,
            ));
        let socket_events = self.socket_events;
        let shutdown = async move {
            shutdown.await;
            // New client events are refused (the client sends them again after reconnecting);
            // those in progress finish and their acks go out before the transports close.
            socket_events.stop_accepting();
            realtime.announce_shutdown().await;
            if !socket_events.finished(crate::realtime::FINISH_WAIT).await {
                tracing::warn!("closing sockets with client events still in progress");
            }
            tokio::time::sleep(crate::realtime::ACK_FLUSH).await;
            // Sockets would hold the server open: close them first. Their transports end
            // without a disconnect packet, so clients reconnect to another node or this one.
            realtime.close().await;
        };
        let send_buffer_bytes = self.send_buffer_bytes;
        let listener = axum::serve::ListenerExt::tap_io(self.listener, move |tcp| {
            if send_buffer_bytes > 0 {
                // A bounded kernel buffer: a client that stops reading fills the socket's own
                // packet buffer within seconds and is disconnected, instead of parking
                // megabytes in the kernel while the machine's TCP memory runs short.
                let _ = socket2::SockRef::from(&*tcp).set_send_buffer_size(send_buffer_bytes);
            }
        });
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")?;
        if let Some(metrics_server) = metrics_server {
            metrics_server.abort();
        }
        let _ = self.stop_broadcaster.send(true);
        if let Some(retention) = self.retention {
            let _ = retention.await;
        }
        if let Some(assigner) = self.assigner {
            let _ = assigner.await;
        }
        if let Some(push) = self.push {
            push.stop().await;
        }
        projections.stop().await;
        store.close().await;
        Ok(())
    }
}

/// Connects to the configured database and applies pending migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<EventStore> {
    Ok(open_and_migrate(config).await?.0)
}

/// Connects to the configured database and applies pending migrations; the store and the
/// migrations applied now. Refuses a master key that does not open the data keys.
pub async fn open_and_migrate(config: &Config) -> anyhow::Result<(EventStore, Vec<String>)> {
    let (store, applied) = open_and_migrate_unchecked(config).await?;
    let wrapped = store.check_data_keys(true).await?;
    if wrapped > 0 {
        tracing::info!(wrapped, "data keys wrapped by the master key");
    }
    Ok((store, applied))
}

/// As [`open_and_migrate`], without checking the data keys against the master key.
pub async fn open_and_migrate_unchecked(
    config: &Config,
) -> anyhow::Result<(EventStore, Vec<String>)> {
    let options = config.store_options();
    let store = EventStore::connect(&options).await.map_err(|error| {
        anyhow::anyhow!(crate::problems::database(
            &options.url,
            &anyhow::Error::from(error)
        ))
    })?;
    let applied = store
        .migrate()
        .await
        .with_context(|| format!("applying migrations to {}", redact_url(&options.url)))?;
    Ok((store, applied))
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
