#pragma once

// parley-sim's engine: thousands of simulated users, each a real libparley
// client (real TLS to a real parleyd), all on one parley::runtime, driven by
// a scenario, measured, and verified by the ledger. Only the public API is
// used: what the simulator does, an application can do.

#include <parley/status.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace parley::sim {

enum class scenario { chat, pairs, storm, offline, groups };

/// Names: "chat", "pairs", "storm", "offline", "groups".
const char* to_string(scenario s);

struct options {
  scenario what = scenario::chat;
  uint32_t users = 100;
  // Where: a running server...
  std::string host = "127.0.0.1";
  uint16_t port = 5290;
  std::string admin_key;
  std::string ca_file;
  std::string app = "sim";
  /// "user token" lines; read when it holds enough users, else written.
  std::string tokens_file;
  /// Its pid, for server_rss_mb (0: unknown unless spawned).
  int server_pid = 0;
  // ...or one started for the run.
  bool spawn_server = false;
  std::string parleyd; ///< Path of parleyd (default: next to parley-sim).
  uint32_t server_threads = 1;
  bool server_nosync = false;
  // Load.
  double duration_s = 10;
  /// Open loop: messages per second for the whole population (0: closed).
  double rate = 0;
  /// Closed loop: messages in flight per user.
  uint32_t window = 4;
  uint32_t payload = 100;
  bool receipts = true; ///< Ask for DELIVERED receipts.
  /// groups: members per group (users are split into groups of this
  /// size, the last one smaller), and how many members of each send
  /// (0: all). Group messages end at SENT (no receipts).
  uint32_t group_size = 100;
  uint32_t group_senders = 0;
  /// offline: messages queued to the one offline user.
  uint64_t offline_messages = 100000;
  /// Logins (TLS handshakes) in flight at once.
  uint32_t connect_window = 256;
  /// After the load: how long to wait for what is in flight.
  double settle_s = 10;
  /// storm: idle time before the memory sample.
  double idle_s = 2;
  /// storm: after the memory sample, every user drops its connection as a
  /// lost network would and logs in again (reconnect_s).
  bool reconnect = false;
  /// storm: then the spawned parleyd stops (SIGTERM) and starts again on
  /// the same data directory, and every user comes back by itself, with
  /// its own backoff (restart_s).
  bool restart_server = false;
  /// Clients resume their TLS session when they reconnect.
  bool tls_resume = true;
  // Faults during the load (chat and pairs).
  /// Connections dropped per second, a random user's each time (as a lost
  /// network would drop them; the client reconnects).
  double drop_rate = 0;
  /// kill -9 the spawned parleyd this many times, evenly spread over the
  /// load, restarting it on the same data directory and port each time.
  uint32_t kill_server = 0;
  // Runtime.
  uint32_t threads = 1;
  uint32_t callback_threads = 0; ///< 0: listeners run inline on the actor threads
  /// Messages each simulated user's in-memory database holds (the oldest
  /// finished ones are evicted beyond it; client_options::memory_messages).
  /// The verification keeps its own books, so this only sets the SDK's
  /// memory: a thousand users holding 1,024 each grew the simulator by
  /// 1.3 KiB per message for the whole of a 10 s chat, fresh pages the
  /// kernel zeroes, on the cores the server shares.
  size_t client_messages = 64;
  /// Conversations each user's database keeps listed after all their
  /// messages were evicted (client_options::memory_idle_conversations).
  /// With random pairs a user meets most of the others: kept for every
  /// peer, they grew the simulator by ~300 bytes per conversation, and
  /// page faults were a tenth of its thread's time.
  size_t client_conversations = 64;
  // Output.
  std::string json_file;
  bool progress = true;
};

/// What a run measured and verified (the JSON report's fields).
struct report {
  std::string scenario;
  std::string mode; ///< "open" or "closed" (or "-" for storm)
  uint32_t users = 0;
  double duration_s = 0;
  double rate = 0;
  uint32_t window = 0;
  uint32_t payload = 0;
  uint64_t attempted = 0;
  uint64_t sent = 0;
  uint64_t delivered = 0;
  uint64_t delivered_in_window = 0;
  uint32_t group_size = 0; ///< groups: members per group.
  uint32_t groups = 0;     ///< groups: how many.
  double delivered_per_s = 0;
  double lat_p50 = 0, lat_p90 = 0, lat_p99 = 0, lat_p999 = 0, lat_max = 0;
  /// Scheduled send to the SENT status at the sender: the server's durable
  /// accept (read, commit, answer), without the delivery.
  double sent_p50 = 0, sent_p90 = 0, sent_p99 = 0, sent_p999 = 0, sent_max = 0;
  /// Open loop: how late the simulator made its send calls (counted in
  /// both latencies; a large lag means the simulator, not the server, is
  /// behind).
  double lag_p50 = 0, lag_p99 = 0, lag_max = 0;
  double login_s = 0;
  /// storm --reconnect: time until every user is back online, and how many
  /// of those logins resumed their TLS session.
  double reconnect_s = 0;
  uint64_t resumed = 0;
  /// storm --restart-server: from the SIGTERM until every user is back
  /// online, and how many of those logins resumed their TLS session.
  double restart_s = 0;
  uint64_t restart_resumed = 0;
  double drain_s = 0;
  double drain_per_s = 0;
  uint64_t lost = 0, duplicated = 0, reordered = 0, unexpected = 0;
  uint64_t pending = 0, failed = 0, send_errors = 0;
  uint64_t login_failures = 0;
  double server_rss_mb = 0;        ///< At the end (or the sample, storm).
  double server_rss_before_mb = 0; ///< Before the users logged in.
  double rss_per_user_kib = 0;     ///< storm: (after - before) / users.
  double server_cpu_s = 0;         ///< CPU the server used during the load.
  double sim_cpu_s = 0;            ///< CPU this process used during the load.
  uint32_t threads = 0, callback_threads = 0, server_threads = 0;
  uint64_t server_kills = 0;     ///< kill -9 + restart cycles done.
  uint64_t connection_drops = 0; ///< Connections dropped by the simulator.
  std::string server_version;

  /// True when nothing was lost, duplicated, reordered or left pending.
  bool verified() const {
    return lost == 0 && duplicated == 0 && reordered == 0 && unexpected == 0 &&
           pending == 0 && login_failures == 0;
  }

  std::string to_json() const;
  std::string to_table() const;
};

/// Runs the scenario. Errors: setup failures (server unreachable, admin key
/// refused...). A run that completes returns its report, verified or not.
result<report> run(const options& opts);

} // namespace parley::sim
