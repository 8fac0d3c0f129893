//! `raftkv serve`: one node, with etcd's flags, until SIGINT/SIGTERM.

use std::future::Future;

use crate::config::ServeArgs;
use crate::grpc::{self, GrpcOptions};
use crate::node;

/// Runs a node until it is told to stop. Errors name what is wrong (bad flags, an
/// unreadable data dir, a port in use, a failing disk).
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("raftkv-io").build()?;
    runtime.block_on(run_async(args, shutdown_signal()))
}

/// Runs a node until `shutdown` completes.
pub async fn run_async(args: ServeArgs, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    let mut args = args;
    crate::tls_policy::apply_auto_tls(&mut args).map_err(anyhow::Error::msg)?;
    let plan = node::plan(&args).map_err(anyhow::Error::msg)?;
    let client_tls = crate::tls::client_acceptor(&args).map_err(anyhow::Error::msg)?;
    let auto_compaction =
        crate::compactor::AutoCompaction::from_flags(&args.auto_compaction_mode, &args.auto_compaction_retention)
            .map_err(anyhow::Error::msg)?;
    // "starting raftkv" with this member's ids is logged by node::start once they are
    // known (a joining member learns them from the running cluster).
    let mut running = node::start(plan).await.map_err(anyhow::Error::msg)?;
    let (stop_sender, stop_receiver) = tokio::sync::watch::channel(false);
    let compactor = crate::compactor::spawn(
        running.handle.clone(),
        running.metrics.clone(),
        auto_compaction,
        stop_receiver.clone(),
    );
    // etcd checks for corruption before serving clients (see corrupt_check.rs).
    let corrupt_check = match crate::corrupt_check::start(&args, &running.handle, stop_receiver.clone()).await {
        Ok(task) => task,
        Err(error) => {
            let _ = running.stop();
            return Err(anyhow::anyhow!(error));
        }
    };
    let mut options = GrpcOptions::with_request_size_bytes_max(args.max_request_bytes);
    options.connections_max = args.max_client_connections.max(1);
    options.concurrent_streams_max = args.max_concurrent_streams.max(1);
    options.forward_tls = crate::tls::forward_client_tls(&args).map_err(anyhow::Error::msg)?;
    options.metrics = Some(running.metrics.clone());
    options.keepalive_min_time = args.grpc_keepalive_min_time;
    options.profiling_enabled = args.enable_pprof;
    options.quota = crate::quota::Quota::from_quota_backend_bytes(args.quota_backend_bytes);
    options.keepalive_interval = args.grpc_keepalive_interval;
    options.keepalive_timeout = args.grpc_keepalive_timeout;
    options.http_rules.cors = crate::gateway::rules::split_list(&args.cors);
    options.http_rules.host_whitelist = crate::gateway::rules::split_list(&args.host_whitelist);
    let mut servers = Vec::new();
    let client_urls = crate::config::split_urls(&args.listen_client_urls);
    for (listener, url) in std::mem::take(&mut running.client_listeners).into_iter().zip(client_urls) {
        let tls = if crate::config::is_https(&url) { client_tls.clone() } else { None };
        let address = listener.local_addr()?;
        let handle = running.handle.clone();
        let options = options.clone();
        let mut stop = stop_receiver.clone();
        servers.push(tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|stop| *stop).await;
            };
            if let Err(error) = grpc::serve_with_tls(listener, tls, handle, options, stopped).await {
                tracing::error!(%address, %error, "client server failed");
            }
        }));
        tracing::info!(%address, %url, "serving etcd v3 gRPC");
    }
    let raft_thread = running.take_raft_thread();
    let raft_failed = async move {
        let Some(thread) = raft_thread else { return std::future::pending().await };
        tokio::task::spawn_blocking(move || thread.join()).await
    };
    let outcome = tokio::select! {
        _ = shutdown => Ok(()),
        result = raft_failed => match result {
            Ok(Ok(Err(error))) => Err(anyhow::anyhow!("write-ahead log failed, stopping: {error}")),
            Ok(Ok(Ok(()))) => Ok(()),
            _ => Err(anyhow::anyhow!("the raft thread stopped unexpectedly")),
        },
    };
    let _ = stop_sender.send(true);
    let _ = compactor.await;
    if let Some(task) = corrupt_check {
        let _ = task.await;
    }
    for server in servers {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), server).await;
    }
    if let Err(error) = running.stop() {
        tracing::error!(%error, "write-ahead log error while stopping");
    }
    tracing::info!("raftkv stopped");
    outcome
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
