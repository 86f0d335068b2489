// parley-sim: thousands of simulated users in one process, measured and
// verified (see tools/sim/sim.hpp and docs/SIMULATOR.md).
//
//   parley-sim --spawn-server --users 1000 chat --duration 10
//   parley-sim --spawn-server --users 1000 chat --rate 20000
//   parley-sim --spawn-server --users 10000 storm
//   parley-sim --spawn-server --users 11 offline --messages 100000
//   parley-sim --server 127.0.0.1:5290 --data-dir parley-data --users 200 pairs
//
// Exit status: 0 verified, 1 lost/duplicated/reordered/pending above zero,
// 2 the run could not be set up.

#include "tools/sim/sim.hpp"

#include <CLI/CLI.hpp>

#include <csignal>
#include <fstream>
#include <iostream>

int main(int argc, char** argv) {
  parley::sim::options o;
  std::string server;
  std::string data_dir;
  std::string what = "chat";
  bool no_receipts = false;
  bool quiet = false;
  CLI::App app{"parley-sim: simulated users against a parleyd, measured and "
               "verified (exactly once, in order)"};
  app.add_option("scenario", what, "chat, pairs, storm, offline or groups")
    ->check(CLI::IsMember({"chat", "pairs", "storm", "offline", "groups"}))
    ->capture_default_str();
  app.add_option("--users,-n", o.users, "simulated users")
    ->capture_default_str();
  app.add_flag("--spawn-server", o.spawn_server,
               "start a parleyd on a temporary data directory for the run");
  app.add_option("--parleyd", o.parleyd,
                 "parleyd to spawn (default: next to parley-sim)");
  app
    .add_option("--server-threads", o.server_threads,
                "worker threads of the spawned parleyd")
    ->capture_default_str();
  app.add_flag("--server-nosync", o.server_nosync,
               "spawned parleyd without fsync (not the durable figure)");
  app.add_option("--server", server, "HOST:PORT of a running parleyd");
  app.add_option("--data-dir", data_dir,
                 "that parleyd's data directory (admin.key, cert.pem)");
  app.add_option("--admin-key", o.admin_key, "admin key (to create users)");
  app.add_option("--ca", o.ca_file, "the server's certificate (PEM)");
  app.add_option("--app", o.app, "app id of the simulated users")
    ->capture_default_str();
  app.add_option("--tokens", o.tokens_file,
                 "'user token' lines: read when it has enough, else written");
  app.add_option("--server-pid", o.server_pid,
                 "pid of the running parleyd (for server_rss_mb)");
  app.add_option("--duration,-d", o.duration_s, "seconds of load")
    ->capture_default_str();
  app
    .add_option("--rate,-r", o.rate,
                "open loop: messages/s for all users (0: closed loop)")
    ->capture_default_str();
  app
    .add_option("--window,-w", o.window,
                "closed loop: messages in flight per user")
    ->capture_default_str();
  app.add_option("--payload", o.payload, "payload bytes (at least 24)")
    ->capture_default_str();
  app.add_flag("--no-receipts", no_receipts,
               "do not ask for DELIVERED receipts");
  app
    .add_option("--group-size", o.group_size,
                "groups: members per group (the users are split into groups)")
    ->capture_default_str();
  app
    .add_option("--group-senders", o.group_senders,
                "groups: members of each group that send (0: all)")
    ->capture_default_str();
  app
    .add_option("--messages", o.offline_messages,
                "offline: messages queued to the offline user")
    ->capture_default_str();
  app
    .add_option("--connect-window", o.connect_window,
                "logins (TLS handshakes) in flight at once")
    ->capture_default_str();
  app
    .add_option("--settle", o.settle_s,
                "seconds to wait for messages in flight after the load")
    ->capture_default_str();
  app
    .add_option("--idle", o.idle_s,
                "storm: idle seconds before the memory sample")
    ->capture_default_str();
  app.add_flag("--reconnect", o.reconnect,
               "storm: then every user drops its connection (as a lost "
               "network would) and logs in again, timed as reconnect_s");
  app.add_flag("--restart-server", o.restart_server,
               "storm: then stop the spawned parleyd (SIGTERM) and start it "
               "again; every user comes back by itself, timed as restart_s");
  bool no_resume = false;
  app.add_flag("--no-tls-resume", no_resume,
               "clients do not resume their TLS session when they reconnect");
  app
    .add_option("--drop-connections", o.drop_rate,
                "fault injection: connections dropped per second (random "
                "users; they reconnect)")
    ->capture_default_str();
  app
    .add_option("--kill-server", o.kill_server,
                "fault injection: kill -9 the spawned parleyd N times during "
                "the load, restarting it each time")
    ->capture_default_str();
  app.add_option("--threads", o.threads, "actor threads of the simulator")
    ->capture_default_str();
  app
    .add_option("--callback-threads", o.callback_threads,
                "listener threads of the simulator (0: the listeners run inline "
                "on the actor threads, without a hop per event)")
    ->capture_default_str();
  app
    .add_option("--client-messages", o.client_messages,
                "messages each simulated user's in-memory database holds "
                "(the oldest finished ones are evicted beyond it)")
    ->check(CLI::Range(size_t{1}, size_t{1} << 30))
    ->capture_default_str();
  app
    .add_option("--client-conversations", o.client_conversations,
                "conversations each simulated user's in-memory database "
                "keeps after all their messages were evicted (the ones "
                "that emptied first are forgotten beyond it)")
    ->check(CLI::Range(size_t{1}, size_t{1} << 30))
    ->capture_default_str();
  app.add_option("--json", o.json_file, "write the JSON report to this file");
  app.add_flag("--quiet,-q", quiet, "no progress line");
  CLI11_PARSE(app, argc, argv);

  o.what = what == "pairs"     ? parley::sim::scenario::pairs
           : what == "storm"   ? parley::sim::scenario::storm
           : what == "offline" ? parley::sim::scenario::offline
           : what == "groups"  ? parley::sim::scenario::groups
                               : parley::sim::scenario::chat;
  o.receipts = !no_receipts;
  o.tls_resume = !no_resume;
  o.progress = !quiet;
  if (!server.empty()) {
    auto colon = server.rfind(':');
    if (colon == std::string::npos) {
      std::cerr << "parley-sim: --server wants HOST:PORT\n";
      return 2;
    }
    o.host = server.substr(0, colon);
    o.port = static_cast<uint16_t>(std::stoul(server.substr(colon + 1)));
  }
  if (!data_dir.empty()) {
    if (o.admin_key.empty()) {
      std::ifstream in{data_dir + "/admin.key"};
      std::getline(in, o.admin_key);
    }
    if (o.ca_file.empty())
      o.ca_file = data_dir + "/cert.pem";
  }
  std::signal(SIGPIPE, SIG_IGN);

  auto r = parley::sim::run(o);
  if (!r) {
    std::cerr << "parley-sim: " << r.error().to_string() << '\n';
    return 2;
  }
  std::cout << r->to_table();
  if (!o.json_file.empty()) {
    std::ofstream out{o.json_file, std::ios::trunc};
    out << r->to_json() << '\n';
    if (!out) {
      std::cerr << "parley-sim: cannot write " << o.json_file << '\n';
      return 2;
    }
  }
  return r->verified() ? 0 : 1;
}
