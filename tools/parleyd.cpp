// parleyd: the Parley server. A thin main over parley::server.
//
//   parleyd                       serve on 127.0.0.1:5290, data in
//   ./parley-data parleyd --demo                also create app "demo" with
//   users alice, bob parleyd --config parleyd.ini  options from a file (same
//   names as flags)

#include <parley/server.hpp>

#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <pthread.h>

namespace {

/// Creates the demo app and two users once; prints how to connect.
int setup_demo(parley::server& srv, const parley::server_options& opts) {
  auto st = srv.app_add("demo", "Parley demo app");
  if (!st && st.code() != parley::status_code::already_exists) {
    std::cerr << "parleyd: creating the demo app: " << st.to_string() << '\n';
    return 1;
  }
  std::string file = opts.data_dir + "/demo-tokens.txt";
  std::ofstream out{file, std::ios::trunc};
  std::cout << "\nDemo app 'demo' on 127.0.0.1:" << srv.port() << '\n';
  for (const char* user : {"alice", "bob"}) {
    auto tok = srv.user_add("demo", user, user);
    if (!tok) {
      std::cerr << "parleyd: creating demo user " << user << ": "
                << tok.error().to_string() << '\n';
      return 1;
    }
    out << user << ' ' << tok->token << '\n';
    std::cout << "  user " << user << "  token " << tok->token << '\n';
  }
  std::cout << "  (tokens saved in " << file << ")\n"
            << "  server certificate: " << srv.cert_file() << '\n'
            << "  SHA-256 fingerprint: " << srv.fingerprint() << '\n'
            << "Connect with app id 'demo', a user's token, and either the "
               "certificate as CA file or the fingerprint pinned.\n\n";
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  parley::server_options opts;
  bool demo = false;
  bool nosync = false;
  CLI::App app{"parleyd: the Parley real-time messaging server"};
  app.set_config("--config", "", "read options from an INI/TOML file");
  app.add_option("--host", opts.host, "address to listen on")
    ->capture_default_str();
  app.add_option("--port", opts.port, "TCP port (0 = any free port)")
    ->capture_default_str();
  app
    .add_option("--data-dir", opts.data_dir,
                "data directory (store, admin key, generated certificate)")
    ->capture_default_str();
  app.add_option("--cert", opts.cert_file,
                 "PEM certificate chain (default: generated)");
  app.add_option("--key", opts.key_file, "PEM private key of --cert");
  app.add_flag("--tls12", opts.allow_tls12, "also accept TLS 1.2 clients");
  app
    .add_option("--tls-ticket-lifetime", opts.tls_ticket_lifetime_s,
                "seconds a TLS session ticket resumes (keys in "
                "DATA_DIR/ticket.keys, rotated every half of it; 0: no "
                "resumption)")
    ->capture_default_str();
  app.add_flag("--nosync", nosync,
               "no fsync per commit (benchmarks only: a crash may lose "
               "messages already reported SENT)");
  app.add_option("--retract-window", opts.retract_window_s,
                 "seconds after sending within which a message may be "
                 "retracted (deleted for everyone)")
    ->capture_default_str();
  app.add_option("--retention", opts.retention_s, "log retention, seconds")
    ->capture_default_str();
  app
    .add_option("--token-ttl", opts.token_ttl_s,
                "default token lifetime, seconds")
    ->capture_default_str();
  app
    .add_option("--inbox-quota", opts.inbox_quota,
                "unacknowledged messages per user before INBOXFULL")
    ->capture_default_str();
  app.add_option("--max-frame", opts.max_frame, "largest frame body, bytes")
    ->capture_default_str();
  app.add_option("--window", opts.window, "log records in flight per device")
    ->capture_default_str();
  app
    .add_option("--ping-interval", opts.ping_interval_s,
                "client ping interval, seconds")
    ->capture_default_str();
  app
    .add_option("--idle-timeout", opts.idle_timeout_s,
                "close connections silent this long, seconds")
    ->capture_default_str();
  app
    .add_option("--login-timeout", opts.login_timeout_s,
                "a connection must finish TLS and log in within, seconds")
    ->capture_default_str();
  app
    .add_option("--max-frames-per-s", opts.max_frames_per_s,
                "frames per second one connection may send (0 = no limit)")
    ->capture_default_str();
  app
    .add_option("--login-failures-per-min", opts.login_failures_per_min,
                "failed logins per minute from one IP address before its "
                "logins are refused (0 = no limit)")
    ->capture_default_str();
  app.add_option("--map-size", opts.map_size, "initial LMDB map size, bytes")
    ->capture_default_str();
  app
    .add_option("--max-map-size", opts.max_map_size,
                "largest LMDB map size, bytes (the map grows up to it)")
    ->capture_default_str();
  app
    .add_option("--threads", opts.threads,
                "worker threads (0 = number of cores)")
    ->capture_default_str();
  app
    .add_option("--log-level", opts.log_level,
                "trace, debug, info, warn, error or off")
    ->capture_default_str();
  app.add_flag("--demo", demo,
               "create app 'demo' with users alice and bob and print their "
               "tokens");
  CLI11_PARSE(app, argc, argv);
  opts.sync = !nosync;

  // Block the stop signals in every thread (the actor system's threads
  // inherit the mask); this thread waits for them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  // Past a file size limit (ulimit -f) a write fails with EFBIG: the
  // store refuses the batch with a reason, and parleyd goes on serving
  // (the default action of SIGXFSZ would kill it).
  std::signal(SIGXFSZ, SIG_IGN);

  auto srv = parley::server::start(opts);
  if (!srv) {
    std::cerr << "parleyd: " << srv.error().to_string() << '\n';
    return 1;
  }
  if (demo && setup_demo(**srv, opts) != 0)
    return 1;
  std::cout << "parleyd listening on " << opts.host << ':' << (*srv)->port()
            << std::endl;
  int sig = 0;
  sigwait(&stop_signals, &sig);
  std::cerr << "parleyd: " << (sig == SIGINT ? "SIGINT" : "SIGTERM")
            << ": stopping\n";
  (*srv)->stop();
  (*srv)->wait();
  return 0;
}
