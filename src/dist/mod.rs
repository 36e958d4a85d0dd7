//! Data parallel across processes and nodes, on burn's collective engine (burn-collective 0.21).
//!
//! # Design
//! One training process per node (`--nodes N --node-rank R --coordinator HOST:PORT`). Inside a
//! process, the profile's devices are driven as before (`train::replicas`: replicas synced from
//! the main device, gradients averaged on it, which is burn-collective's `Centralized` local
//! strategy done in the trainer's own thread). Across processes:
//! - **Joining** is burn-collective's: rank 0 hosts its global orchestrator
//!   (`start_global_orchestrator`, feature `orchestrator`) on the coordinator port; each process
//!   `register`s one peer (`PeerId` = node rank, `num_devices: 1`, `num_nodes`, the
//!   coordinator's address, its own node address and data-service port `P + 1 + 2R`), which
//!   returns once every node has, and the nodes exchange their addresses with one global
//!   `all_reduce` (ring).
//! - **Every later all-reduce** runs on burn-communication's `TensorDataService` (the transport
//!   burn-collective's global level itself uses: WebSocket, axum + tokio-tungstenite), served by
//!   each node on port `P + 2 + 2R`: a node exposes its vector under the call's transfer id and
//!   downloads every other node's, then sums them in rank order, so every node gets the same
//!   bits (for 2 nodes, exactly what one process computes for 2 devices). Why not burn-collective
//!   for these too: see below. Its cost is (N − 1) × the vector per node and step, the same as
//!   the ring for 2 nodes and more beyond; fine for the few nodes this is for.
//!
//! `--data-port D` moves a node's two ports to `D` and `D + 1`.
//!
//! # What burn-collective 0.21 does and does not do (read from its source, tag v0.21.0)
//! - `register` / `all_reduce` / `finish_collective` are per backend type and blocking; the local
//!   server waits until `num_devices` peers of the process called. Driving several local devices
//!   through its local level would need one thread per device; the trainer drives its devices
//!   from one thread, so the local level stays in `train::replicas` (same arithmetic as the
//!   `Centralized` strategy), and burn-collective carries the level between processes.
//! - It works with any backend's primitives; with an autodiff backend the inner one must be used.
//!   The all-reduce here runs on **Flex** (CPU) tensors whatever the training engine (Flex,
//!   LibTorch, CUDA): the global level copies tensors to the host for the WebSocket anyway
//!   (`TensorDataService` sends `TensorData`), so this costs one host copy per step and keeps
//!   the layer independent of the training backend.
//! - **Its global all-reduce works once per process.** `SyncService::sync` (global/node/sync.rs),
//!   which every global strategy (ring, tree, centralized) awaits at the end, compares the peers
//!   that synced with all nodes and then clears a *copy* of that list
//!   (`self.syncing_peers.lock().unwrap().to_vec()` … `syncing_peers.clear()`): the real list
//!   keeps the first call's peers, so the second call's list is never equal to the node list and
//!   every node waits for ever. Seen here: the second `all_reduce::<Flex>` of a 2-node job on
//!   loopback never returned (both nodes ran into the timeout). Finishing and registering again
//!   before every step would reset it, at the cost of new connections and an orchestrator round
//!   per step. Hence the data-service transport above for everything after the address exchange.
//! - The global level implements all-reduce only: global `reduce` and `broadcast` are
//!   `unimplemented!()` (`Node::reduce`, `Node::broadcast`). Broadcasts (the start model, the BN
//!   buffers of rank 0, every rank's texts) are therefore sums where only the sender contributes.
//! - No timeout and no failure detection: a peer that dies mid all-reduce leaves the others
//!   waiting for ever (the ring's upload waits for a download that never comes; a refused
//!   connection panics inside a spawned task). Every call here therefore runs on a helper thread
//!   with a deadline, and while it waits the peers' data-service ports are probed with a plain
//!   TCP connect: a refused connection means that process is gone. Either ends the job with a
//!   message naming the node; the hung helper thread ends with the process.
//! - `register` retries connecting to the orchestrator every second for ever (printing
//!   `Connecting to ws://…` on stdout each time); the join is bounded by the same deadline.
//! - A server that cannot bind its port only logs it (and burn-communication's servers install
//!   an INFO-level log printer on stdout unless one is set): the ports are checked free before
//!   the engine starts, and a silent log subscriber is set.
//! - Not fixed here, bounded by the deadline: `SyncService::sync` and the data service's
//!   `get_exposed_tensor_bytes` check their state, release the lock, then create the
//!   `Notify::notified()` future; a notification that lands between the two is lost
//!   (`notify_waiters` stores no permit) and that call waits until the next one. The data
//!   service also drops an exposed vector when its last download *starts*, hence the short
//!   linger in `Transport`'s `Drop`.

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use burn_collective::{CollectiveConfig, PeerId, ReduceOperation};
use burn_communication::data_service::{TensorDataServer, TensorDataService};
use burn_communication::websocket::{WebSocket, WsServer};
use burn_communication::{Address, ProtocolServer};
use tokio_util::sync::CancellationToken;

/// The default bound on every wait for the other nodes (joining, each all-reduce).
pub const DEFAULT_TIMEOUT_S: u64 = 600;

/// After a stop signal, how long a wait for the other nodes may still take.
const SIGNAL_GRACE: Duration = Duration::from_secs(5);

/// How a multi-node job is laid out, as the command line says.
#[derive(Debug, Clone, PartialEq)]
pub struct DistOptions {
    pub nodes: u32,
    pub node_rank: u32,
    /// `HOST:PORT` of rank 0's orchestrator.
    pub coordinator: String,
    /// This node's tensor data-service port; default `coordinator port + 1 + rank`.
    pub data_port: Option<u16>,
    /// Bound on every wait for the other nodes.
    pub timeout: Duration,
}

/// A checked [`DistOptions`]: the coordinator resolved, this node's address found.
#[derive(Debug, Clone)]
pub struct Layout {
    pub nodes: u32,
    pub rank: u32,
    pub coordinator: SocketAddr,
    pub coordinator_host: String,
    /// The address the other nodes reach this node's burn-collective data service at; the
    /// step transport listens on the next port.
    pub node_addr: SocketAddr,
    pub timeout: Duration,
}

impl DistOptions {
    /// Checks the values and resolves the addresses; every error names the value.
    pub fn check(&self) -> anyhow::Result<Layout> {
        if self.nodes < 2 {
            anyhow::bail!(
                "--nodes {}: a multi-node job has at least 2 nodes (drop --nodes for a single-process run)",
                self.nodes
            );
        }
        if self.node_rank >= self.nodes {
            anyhow::bail!(
                "--node-rank {} is not below --nodes {}: ranks are 0 to {}",
                self.node_rank,
                self.nodes,
                self.nodes - 1
            );
        }
        if self.timeout.is_zero() {
            anyhow::bail!(
                "--collective-timeout 0: the bound on waiting for the other nodes must be at least 1 second"
            );
        }
        let (host, port) = split_host_port(&self.coordinator)?;
        let coordinator = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| {
                anyhow::anyhow!(
                    "--coordinator {:?}: cannot resolve {host:?}: {e}",
                    self.coordinator
                )
            })?
            .find(|a| a.is_ipv4())
            .or_else(|| (host.as_str(), port).to_socket_addrs().ok()?.next())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--coordinator {:?}: {host:?} resolves to no address",
                    self.coordinator
                )
            })?;
        let data_port = match self.data_port {
            Some(p) if p < u16::MAX => p,
            Some(p) => anyhow::bail!("--data-port {p}: this node also needs port {p} + 1"),
            None => u16::try_from(port as u32 + 1 + 2 * self.node_rank)
                .ok()
                .filter(|p| *p < u16::MAX)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--coordinator {:?}: port {port} + 1 + 2 × rank {} (and the next) is past 65535; choose a lower port or set --data-port",
                        self.coordinator,
                        self.node_rank
                    )
                })?,
        };
        let ip = local_ip_towards(coordinator).map_err(|e| {
            anyhow::anyhow!(
                "--coordinator {:?}: no route from this node to {coordinator}: {e}",
                self.coordinator
            )
        })?;
        Ok(Layout {
            nodes: self.nodes,
            rank: self.node_rank,
            coordinator,
            coordinator_host: host,
            node_addr: SocketAddr::new(ip, data_port),
            timeout: self.timeout,
        })
    }
}

/// `HOST:PORT` (`[v6]:PORT` too) into its parts.
fn split_host_port(value: &str) -> anyhow::Result<(String, u16)> {
    let bad = |why: &str| {
        anyhow::anyhow!("--coordinator {value:?} is not HOST:PORT ({why}), e.g. node001:29500")
    };
    let (host, port) = value.rsplit_once(':').ok_or_else(|| bad("no ':PORT'"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("no host"));
    }
    if host.contains("://") || host.contains('/') {
        return Err(bad(
            "give the host name or address only, without a scheme or path",
        ));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| bad(&format!("{port:?} is not a port number")))?;
    if port == 0 {
        return Err(bad("port 0"));
    }
    Ok((host.to_string(), port))
}

/// The local address this node uses to reach `to` (a UDP `connect` sends nothing; it only picks
/// the route).
fn local_ip_towards(to: SocketAddr) -> std::io::Result<std::net::IpAddr> {
    let any: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal address")
    } else {
        "[::]:0".parse().expect("literal address")
    };
    let socket = UdpSocket::bind(any)?;
    socket.connect(to)?;
    Ok(socket.local_addr()?.ip())
}

/// Why a collective call did not complete.
#[derive(Debug, Clone, PartialEq)]
pub enum DistError {
    /// No answer within the deadline.
    Timeout { what: String, waited: Duration },
    /// A peer's process is gone (its data service refuses connections).
    PeerGone {
        what: String,
        node: u32,
        addr: SocketAddr,
    },
    /// burn-collective reported an error.
    Engine { what: String, error: String },
}

impl std::fmt::Display for DistError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DistError::Timeout { what, waited } => write!(
                f,
                "{what}: no answer from the other nodes within {:.0} s (--collective-timeout): a node died, hangs or never joined",
                waited.as_secs_f64()
            ),
            DistError::PeerGone { what, node, addr } => {
                write!(f, "{what}: node {node} ({addr}) is gone: its process ended")
            }
            DistError::Engine { what, error } => write!(f, "{what}: {error}"),
        }
    }
}

impl std::error::Error for DistError {}

/// This process's membership in a multi-node job.
pub struct Collective {
    layout: Layout,
    transport: Arc<Transport>,
    /// The other nodes' data-service addresses (learnt by [`Collective::all_gather_text`] at
    /// the start), probed while waiting.
    peers: Vec<(u32, SocketAddr)>,
    /// The stop flag of the run (signals): shortens a wait to [`SIGNAL_GRACE`].
    stop: Arc<AtomicUsize>,
    device: burn::backend::flex::FlexDevice,
}

impl Collective {
    /// Joins the job: rank 0 starts the orchestrator, every rank registers and waits (at most
    /// the timeout) until all nodes have, then the nodes exchange their transports' addresses.
    pub fn join(layout: Layout, stop: Arc<AtomicUsize>) -> anyhow::Result<Collective> {
        // burn-communication's `WsServer::serve` installs an INFO-level printer of every
        // connection on stdout unless a global subscriber exists: set a silent one first (it
        // fails harmlessly when one is set already).
        let _ =
            tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::default());
        quiet_engine_panics();
        // Ports in use would only show up as a hang inside the engine (it logs and carries on).
        if layout.rank == 0 {
            let port = layout.coordinator.port();
            check_port_free(port).map_err(|e| {
                anyhow::anyhow!(
                    "--coordinator {}:{port}: rank 0 cannot listen on port {port}: {e}",
                    layout.coordinator_host
                )
            })?;
            std::thread::Builder::new()
                .name("collective-orchestrator".into())
                .spawn(move || {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt.block_on(burn_collective::start_global_orchestrator(port)),
                        Err(e) => crate::errln!("cannot start the collective orchestrator: {e}"),
                    }
                })
                .map_err(|e| anyhow::anyhow!("cannot start the orchestrator thread: {e}"))?;
        }
        let transport_addr = SocketAddr::new(layout.node_addr.ip(), layout.node_addr.port() + 1);
        for port in [layout.node_addr.port(), transport_addr.port()] {
            check_port_free(port).map_err(|e| {
                anyhow::anyhow!(
                    "node {}: cannot listen on data port {port}: {e} (set others with --data-port)",
                    layout.rank
                )
            })?;
        }
        let transport = Arc::new(Transport::start(transport_addr.port())?);
        let global: burn_communication::Address = format!(
            "ws://{}:{}",
            layout.coordinator.ip(),
            layout.coordinator.port()
        )
        .parse()
        .map_err(|e: String| anyhow::anyhow!("coordinator address: {e}"))?;
        let node: burn_communication::Address = format!("ws://{}", layout.node_addr)
            .parse()
            .map_err(|e: String| anyhow::anyhow!("node address: {e}"))?;
        let config = CollectiveConfig::default()
            .with_num_devices(1)
            .with_num_nodes(layout.nodes)
            .with_global_address(global)
            .with_node_address(node)
            .with_data_service_port(layout.node_addr.port());
        let mut c = Collective {
            layout,
            transport,
            peers: Vec::new(),
            stop,
            device: Default::default(),
        };
        let (rank, device) = (c.layout.rank, c.device);
        c.wait(
            &format!(
                "joining the {}-node job at {}:{}",
                c.layout.nodes,
                c.layout.coordinator_host,
                c.layout.coordinator.port()
            ),
            move || {
                burn_collective::register::<Flex>(PeerId(rank), device, config)
                    .map_err(|e| format!("{e:?}"))
            },
        )?;
        let addrs = c.exchange_addresses(transport_addr)?;
        for (node, addr) in addrs.iter().enumerate() {
            if node as u32 == c.layout.rank {
                continue;
            }
            let addr: SocketAddr = addr.parse().map_err(|_| {
                anyhow::anyhow!("node {node} sent {addr:?} as its address, not IP:PORT")
            })?;
            c.peers.push((node as u32, addr));
        }
        Ok(c)
    }

    pub fn rank(&self) -> u32 {
        self.layout.rank
    }

    pub fn nodes(&self) -> u32 {
        self.layout.nodes
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Every node's transport address, by rank, through burn-collective's global all-reduce
    /// (its one call in this process: see the module documentation).
    fn exchange_addresses(&self, mine: SocketAddr) -> Result<Vec<String>, DistError> {
        const WIDTH: usize = 64;
        let what = "exchanging node addresses";
        let text = mine.to_string();
        let bytes = &text.as_bytes()[..text.len().min(WIDTH - 1)];
        let nodes = self.layout.nodes as usize;
        let mut values = vec![0f32; WIDTH * nodes];
        let base = WIDTH * self.layout.rank as usize;
        values[base] = bytes.len() as f32;
        for (i, b) in bytes.iter().enumerate() {
            values[base + 1 + i] = *b as f32;
        }
        let n = values.len();
        let (rank, device) = (self.layout.rank, self.device);
        let out = self.wait(what, move || {
            let t = Tensor::<Flex, 1>::from_data(TensorData::new(values, [n]), &device);
            let p = t.into_primitive().tensor();
            burn_collective::all_reduce::<Flex>(PeerId(rank), p, ReduceOperation::Sum)
                .map(|p| Tensor::<Flex, 1>::from_primitive(TensorPrimitive::Float(p)))
                .map_err(|e| format!("{e:?}"))
        })?;
        let out = out
            .into_data()
            .to_vec::<f32>()
            .map_err(|e| DistError::Engine {
                what: what.into(),
                error: format!("{e:?}"),
            })?;
        Ok(out.chunks(WIDTH).map(decode_slot).collect())
    }

    /// The element-wise sum of `values` over all nodes (every node passes the same length),
    /// added in rank order on every node, so all get the same bits.
    pub fn all_reduce_sum(&self, what: &str, values: Vec<f32>) -> Result<Vec<f32>, DistError> {
        let transport = self.transport.clone();
        let (rank, peers) = (self.layout.rank, self.peers.clone());
        self.wait(what, move || transport.all_reduce_sum(rank, &peers, values))
    }

    /// Every node's `text`, indexed by rank (a sum in which each node fills its own slot: the
    /// global level has no gather).
    pub fn all_gather_text(&self, what: &str, text: &str) -> Result<Vec<String>, DistError> {
        const MAX: usize = 4096;
        let bytes = &text.as_bytes()[..text.len().min(MAX)];
        // Slot: length, then one byte per value (exact in f32).
        let width = self.all_reduce_sum(what, vec![bytes.len() as f32])?;
        let longest = width[0] as usize; // a sum bounds every length
        let slot = 1 + longest;
        let mut v = vec![0f32; slot * self.layout.nodes as usize];
        let base = slot * self.layout.rank as usize;
        v[base] = bytes.len() as f32;
        for (i, b) in bytes.iter().enumerate() {
            v[base + 1 + i] = *b as f32;
        }
        let v = self.all_reduce_sum(what, v)?;
        Ok(v.chunks(slot).map(decode_slot).collect())
    }

    /// Leaves the job (best effort: the orchestrator may already be gone with rank 0). The
    /// transport's connections are closed first, so the other nodes see a clean close.
    pub fn finish(self) {
        let rank = self.layout.rank;
        let transport = self.transport.clone();
        let _ = self.wait("closing the transport", move || {
            transport.runtime.block_on(transport.service.close());
            Ok(())
        });
        let c = Collective {
            layout: Layout {
                timeout: Duration::from_secs(5),
                ..self.layout.clone()
            },
            transport: self.transport.clone(),
            peers: Vec::new(),
            stop: self.stop.clone(),
            device: self.device,
        };
        let _ = c.wait("leaving the job", move || {
            burn_collective::finish_collective::<Flex>(PeerId(rank)).map_err(|e| format!("{e:?}"))
        });
    }

    /// Runs `call` on a helper thread and waits for it: at most the timeout (5 s once a stop
    /// signal came), and no longer than it takes to see that a peer's process is gone.
    fn wait<T: Send + 'static>(
        &self,
        what: &str,
        call: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<T, DistError> {
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("collective-call".into())
            .spawn(move || {
                let _ = tx.send(call());
            });
        if let Err(e) = spawned {
            return Err(DistError::Engine {
                what: what.into(),
                error: format!("cannot start a thread: {e}"),
            });
        }
        let start = Instant::now();
        let mut deadline = start + self.layout.timeout;
        let mut next_probe = start + Duration::from_secs(1);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(error)) => {
                    return Err(DistError::Engine {
                        what: what.into(),
                        error,
                    });
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // The helper panicked inside the engine (e.g. a peer's connection refused).
                    return Err(self.gone_or(what, "the engine's call panicked".into()));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            if self.stop.load(Ordering::SeqCst) != 0 {
                deadline = deadline.min(now + SIGNAL_GRACE);
            }
            if now >= deadline {
                return Err(DistError::Timeout {
                    what: what.into(),
                    waited: now - start,
                });
            }
            if now >= next_probe {
                next_probe = now + Duration::from_secs(1);
                if let Some((node, addr)) = self.gone_peer() {
                    return Err(DistError::PeerGone {
                        what: what.into(),
                        node,
                        addr,
                    });
                }
            }
        }
    }

    fn gone_or(&self, what: &str, error: String) -> DistError {
        match self.gone_peer() {
            Some((node, addr)) => DistError::PeerGone {
                what: what.into(),
                node,
                addr,
            },
            None => DistError::Engine {
                what: what.into(),
                error,
            },
        }
    }

    /// A peer whose data service refuses connections (its process ended).
    fn gone_peer(&self) -> Option<(u32, SocketAddr)> {
        self.peers.iter().copied().find(|(_, addr)| {
            matches!(
                TcpStream::connect_timeout(addr, Duration::from_millis(500)),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
            )
        })
    }
}

/// A text slot of a gathering sum: its length, then one byte per value.
fn decode_slot(s: &[f32]) -> String {
    let len = (s[0] as usize).min(s.len() - 1);
    let b: Vec<u8> = s[1..1 + len].iter().map(|&x| x as u8).collect();
    String::from_utf8_lossy(&b).into_owned()
}

/// The step transport: burn-communication's tensor data service on this node's second port.
struct Transport {
    runtime: tokio::runtime::Runtime,
    service: Arc<TensorDataService<Flex, WebSocket>>,
    /// Transfer ids: one per call, the same sequence on every node.
    next_id: std::sync::atomic::AtomicU64,
    _cancel: CancellationToken,
}

impl Transport {
    fn start(port: u16) -> anyhow::Result<Transport> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("collective-transport")
            .enable_all()
            .build()
            .map_err(|e| anyhow::anyhow!("cannot start the transport's runtime: {e}"))?;
        let cancel = CancellationToken::new();
        let service = Arc::new(TensorDataService::<Flex, WebSocket>::new(cancel.clone()));
        let server = WsServer::new(port).route_tensor_data_service(service.clone());
        let shutdown = {
            let cancel = cancel.clone();
            async move { cancel.cancelled().await }
        };
        runtime.spawn(async move {
            if let Err(e) = server.serve(shutdown).await {
                crate::errln!("the collective transport on port {port} stopped: {e:?}");
            }
        });
        Ok(Transport {
            runtime,
            service,
            next_id: std::sync::atomic::AtomicU64::new(0),
            _cancel: cancel,
        })
    }

    /// Exposes `values` for the other nodes, downloads theirs, sums all in rank order.
    fn all_reduce_sum(
        &self,
        rank: u32,
        peers: &[(u32, SocketAddr)],
        values: Vec<f32>,
    ) -> Result<Vec<f32>, String> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst).into();
        let n = values.len();
        self.runtime.block_on(async {
            if !peers.is_empty() {
                let data = TensorData::new(values.clone(), [n]);
                self.service
                    .expose_data(data, peers.len() as u32, id)
                    .await;
            }
            let downloads = peers.iter().map(|&(node, addr)| {
                let service = self.service.clone();
                async move {
                    let address: Address = format!("ws://{addr}")
                        .parse()
                        .map_err(|e: String| format!("node {node}: {e}"))?;
                    let data = service
                        .download_tensor(address, id)
                        .await
                        .ok_or_else(|| {
                            format!("node {node} ({addr}) closed the connection: its process ended or failed")
                        })?;
                    let v = data
                        .to_vec::<f32>()
                        .map_err(|e| format!("node {node} sent {e:?}"))?;
                    if v.len() != n {
                        return Err(format!(
                            "node {node} sent {} values, this node has {n}: the nodes run different models",
                            v.len()
                        ));
                    }
                    Ok::<_, String>((node, v))
                }
            });
            let mut all = futures_util::future::join_all(downloads)
                .await
                .into_iter()
                .collect::<Result<Vec<_>, String>>()?;
            all.push((rank, values));
            all.sort_by_key(|(node, _)| *node);
            let mut parts = all.into_iter().map(|(_, v)| v);
            let mut sum = parts.next().unwrap_or_default();
            for v in parts {
                sum.iter_mut().zip(&v).for_each(|(s, x)| *s += x);
            }
            // Done when every other node has taken this node's vector too (the service drops it
            // after the last download): a node that returned earlier could exit, say after a
            // failed check, while another still downloads from it.
            while self.service.exposed_tensors.lock().await.contains_key(&id) {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            Ok(sum)
        })
    }
}

impl Drop for Transport {
    /// The service drops a vector when its last download starts, not when it ends: give the
    /// last transfers this node serves time to leave before the runtime (and its tasks) stop.
    fn drop(&mut self) {
        if self.next_id.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A panic inside the engine's tasks (burn-communication panics in its server task when a peer's
/// connection drops, and in a download when a peer refuses it) is reported by the waiting call
/// with the node it concerns; here it prints one line, not a backtrace.
fn quiet_engine_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("");
            if name.starts_with("collective-") || name == "tokio-rt-worker" {
                let what = info
                    .payload()
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| info.payload().downcast_ref::<&str>().copied())
                    .unwrap_or("panic");
                crate::errln!("note: collective engine ({name}): {what}");
            } else {
                previous(info);
            }
        }));
    });
}

fn check_port_free(port: u16) -> std::io::Result<()> {
    TcpListener::bind(("0.0.0.0", port)).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(nodes: u32, rank: u32, coordinator: &str) -> DistOptions {
        DistOptions {
            nodes,
            node_rank: rank,
            coordinator: coordinator.into(),
            data_port: None,
            timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn bad_layouts_are_refused_naming_the_value() {
        let e = opts(2, 2, "127.0.0.1:29500")
            .check()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--node-rank 2") && e.contains("--nodes 2"),
            "{e}"
        );
        let e = opts(1, 0, "127.0.0.1:29500")
            .check()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--nodes 1"), "{e}");
        for bad in ["127.0.0.1", "127.0.0.1:port", ":29500", "ws://h:1", "h:0"] {
            let e = opts(2, 0, bad).check().unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{bad}: {e}");
        }
        let e = opts(2, 0, "no-such-host.invalid:29500")
            .check()
            .unwrap_err()
            .to_string();
        assert!(e.contains("no-such-host.invalid"), "{e}");
        let e = opts(2, 1, "127.0.0.1:65535")
            .check()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--data-port"), "{e}");
    }

    #[test]
    fn a_loopback_layout_gets_its_data_port_after_the_coordinator() {
        let l = opts(3, 2, "127.0.0.1:29500").check().unwrap();
        assert_eq!(l.coordinator.port(), 29500);
        assert_eq!(l.node_addr, "127.0.0.1:29505".parse().unwrap());
        let l = opts(2, 1, "localhost:40000").check().unwrap();
        assert_eq!(l.node_addr.ip().to_string(), "127.0.0.1");
    }
}
