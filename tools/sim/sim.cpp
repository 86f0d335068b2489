#include "tools/sim/sim.hpp"

#include "tools/sim/histogram.hpp"
#include "tools/sim/ledger.hpp"

#include <parley/admin.hpp>
#include <parley/client.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace parley::sim {

namespace fs = std::filesystem;
using namespace std::chrono;

const char* to_string(scenario s) {
  switch (s) {
  case scenario::chat:
    return "chat";
  case scenario::pairs:
    return "pairs";
  case scenario::storm:
    return "storm";
  case scenario::offline:
    return "offline";
  case scenario::groups:
    return "groups";
  }
  return "?";
}

namespace {

int64_t now_ns() {
  return duration_cast<nanoseconds>(steady_clock::now().time_since_epoch())
    .count();
}

double secs(int64_t ns) {
  return static_cast<double>(ns) / 1e9;
}

// -- a process's figures from /proc ------------------------------------------

/// Resident set size of `pid` in MiB; 0 when unknown.
double rss_mb(int pid) {
  if (pid <= 0)
    return 0;
  std::ifstream in{"/proc/" + std::to_string(pid) + "/status"};
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0)
      return std::stod(line.substr(6)) / 1024.0;
  return 0;
}

/// User + system CPU seconds of `pid`; 0 when unknown.
double cpu_s(int pid) {
  if (pid <= 0)
    return 0;
  std::ifstream in{"/proc/" + std::to_string(pid) + "/stat"};
  std::string all((std::istreambuf_iterator<char>(in)),
                  std::istreambuf_iterator<char>());
  auto close = all.rfind(')'); // the name may hold spaces
  if (close == std::string::npos)
    return 0;
  std::istringstream rest{all.substr(close + 2)};
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i)
    if (i == 14 || i == 15)
      ticks += std::stod(field);
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double self_cpu_s() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  auto tv = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return tv(ru.ru_utime) + tv(ru.ru_stime);
}

// -- a parleyd of our own ----------------------------------------------------

/// A parleyd child on a temporary data directory, stopped (SIGTERM) and
/// removed when this goes away.
class spawned_server {
 public:
  static result<std::unique_ptr<spawned_server>> start(const options& o) {
    auto bin = o.parleyd;
    if (bin.empty()) {
      std::error_code ec;
      auto self = fs::read_symlink("/proc/self/exe", ec);
      bin = (self.parent_path() / "parleyd").string();
    }
    if (::access(bin.c_str(), X_OK) != 0)
      return status{status_code::not_found,
                    "no parleyd at '" + bin +
                      "': build it, or pass --parleyd PATH"};
    auto s = std::make_unique<spawned_server>();
    auto tmpl = (fs::temp_directory_path() / "parley-sim-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr)
      return status{status_code::io_error,
                    "cannot create a temporary data directory"};
    s->dir_ = tmpl;
    auto quota = std::max<uint64_t>(100000, o.offline_messages * 2);
    std::vector<std::string> args{bin,
                                  "--data-dir",
                                  s->dir_,
                                  "--host",
                                  "127.0.0.1",
                                  "--port",
                                  "0",
                                  "--threads",
                                  std::to_string(o.server_threads),
                                  "--inbox-quota",
                                  std::to_string(quota),
                                  "--log-level",
                                  "warn"};
    if (o.server_nosync)
      args.emplace_back("--nosync");
    s->args_ = std::move(args);
    if (auto st = s->launch(); !st)
      return st;
    std::ifstream key{s->dir_ + "/admin.key"};
    std::getline(key, s->admin_key_);
    return s;
  }

  /// kill -9, then a restart on the same data directory and port. The CPU
  /// the killed process used is kept for the report.
  status kill_and_restart() {
    killed_cpu_s_ += cpu_s(pid_);
    ::kill(pid_, SIGKILL);
    int st = 0;
    ::waitpid(pid_, &st, 0);
    pid_ = 0;
    pin_port();
    return launch();
  }

  /// SIGTERM (parleyd says goodbye to every session), then a start on the
  /// same data directory and port. The CPU of the stopped process is kept
  /// for the report.
  status restart() {
    killed_cpu_s_ += cpu_s(pid_);
    stop();
    pin_port();
    return launch();
  }

  /// CPU seconds of the processes killed so far.
  double killed_cpu_s() const { return killed_cpu_s_; }

  ~spawned_server() {
    stop();
    if (!dir_.empty()) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
  }

  int pid() const { return pid_; }
  uint16_t port() const { return port_; }
  const std::string& admin_key() const { return admin_key_; }
  std::string cert() const { return dir_ + "/cert.pem"; }

 private:
  /// SIGTERM, and kill -9 when it has not exited within 5 s.
  void stop() {
    if (pid_ <= 0)
      return;
    ::kill(pid_, SIGTERM);
    int st = 0;
    for (int i = 0; i < 100; ++i) {
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = 0;
        return;
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &st, 0);
    pid_ = 0;
  }

  /// The next launch binds the port the clients know.
  void pin_port() {
    for (auto i = args_.begin(); i != args_.end(); ++i)
      if (*i == "--port" && i + 1 != args_.end())
        *(i + 1) = std::to_string(port_);
  }

  /// Starts parleyd with args_ and reads the port from its first line.
  status launch() {
    int out[2];
    if (::pipe(out) != 0)
      return status{status_code::io_error, "pipe failed"};
    auto pid = ::fork();
    if (pid < 0)
      return status{status_code::io_error, "fork failed"};
    if (pid == 0) {
      ::dup2(out[1], 1);
      ::close(out[0]);
      ::close(out[1]);
      std::vector<char*> argv;
      for (auto& a : args_)
        argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out[1]);
    pid_ = pid;
    port_ = 0;
    // Its first line says where it listens.
    std::string line;
    char c;
    while (::read(out[0], &c, 1) == 1) {
      if (c != '\n') {
        line += c;
        continue;
      }
      static const std::string prefix = "parleyd listening on ";
      if (line.rfind(prefix, 0) == 0) {
        auto addr = line.substr(prefix.size());
        port_ =
          static_cast<uint16_t>(std::stoul(addr.substr(addr.rfind(':') + 1)));
        break;
      }
      line.clear();
    }
    ::close(out[0]);
    if (port_ == 0)
      return status{status_code::unavailable,
                    "parleyd did not start (run it by hand to see why: " +
                      args_[0] + " --data-dir " + dir_ + ")"};
    return {};
  }

  std::vector<std::string> args_;
  int pid_ = 0;
  uint16_t port_ = 0;
  std::string dir_;
  std::string admin_key_;
  double killed_cpu_s_ = 0;
};

// -- users -------------------------------------------------------------------

struct credential {
  std::string address;
  std::string token;
};

/// Creates `n` users sim-0 .. sim-(n-1) (new tokens), a thousand per
/// transaction on the server (admin_client::users_add).
result<std::vector<credential>> make_users(const admin_options& ao,
                                           const std::string& app, uint32_t n) {
  auto adm = admin_client::connect(ao);
  if (!adm)
    return adm.error().annotate("connecting as admin");
  auto st = (*adm)->app_add(app, "parley-sim");
  if (!st && st.code() != status_code::already_exists)
    return st.annotate("creating app '" + app + "'");
  std::vector<std::string> addresses;
  addresses.reserve(n);
  for (uint32_t i = 0; i < n; ++i)
    addresses.push_back("sim-" + std::to_string(i));
  auto toks = (*adm)->users_add(app, addresses);
  if (!toks)
    return toks.error().annotate("creating " + std::to_string(n) + " users");
  std::vector<credential> out;
  out.reserve(n);
  for (auto& t : *toks)
    out.push_back({std::move(t.address), std::move(t.token)});
  return out;
}

std::vector<credential> read_tokens(const std::string& file) {
  std::vector<credential> out;
  std::ifstream in{file};
  std::string addr, tok;
  while (in >> addr >> tok)
    out.push_back({addr, tok});
  return out;
}

// -- the engine --------------------------------------------------------------

class engine;

struct user {
  uint32_t idx = 0;
  credential cred;
  std::unique_ptr<client> c;
  std::shared_ptr<listener> l;
  uint32_t group = 0;     ///< groups: index of the user's group.
  bool sender = true;     ///< groups: whether this member sends.
  std::mutex send_mtx;    ///< Numbering + send, in order, per sender.
  uint32_t in_flight = 0; ///< Closed loop (under send_mtx).
  std::minstd_rand rng;   ///< Under send_mtx.
  std::atomic<bool> online{false};
  std::atomic<bool> ever_online{false};
  std::atomic<uint32_t> online_phase{0}; ///< engine::phase_ when last online
};

class engine {
 public:
  explicit engine(const options& o) : o_(o), ledger_(o.receipts) {
    // nop
  }

  options o_;
  ledger ledger_;
  histogram latency_;      ///< Scheduled send to the receiver's callback.
  histogram sent_latency_; ///< Scheduled send to SENT at the sender.
  histogram send_lag_;     ///< Open loop: scheduled send to the send call.
  std::vector<std::unique_ptr<user>> users_;
  /// groups: each group's id on the server and its members (user indices).
  std::vector<uint32_t> group_ids_;
  std::vector<std::vector<uint32_t>> members_;
  send_options send_opts_;
  bool closed_loop_ = true;
  bool record_latency_ = true;

  std::atomic<bool> sending_{false};
  std::atomic<int64_t> window_start_ns_{0};
  std::atomic<int64_t> window_end_ns_{0};
  std::atomic<uint64_t> delivered_{0};
  std::atomic<uint64_t> delivered_in_window_{0};
  std::atomic<uint64_t> send_errors_{0};
  std::atomic<uint64_t> online_ever_{0};
  std::atomic<uint64_t> login_failures_{0};
  /// Users that came online in the current login phase (login_phase), each
  /// counted once: `phase_` numbers the phases.
  std::atomic<uint64_t> online_events_{0};
  std::atomic<uint32_t> phase_{0};
  std::atomic<int64_t> last_delivery_ns_{0};
  std::mutex reasons_mtx_;
  std::vector<std::string> reasons_; ///< The first few failure reasons.

  std::mutex mtx_;
  std::condition_variable cv_; ///< Logins and failures.

  void note_reason(const std::string& r) {
    std::lock_guard<std::mutex> g{reasons_mtx_};
    if (reasons_.size() < 5 &&
        std::find(reasons_.begin(), reasons_.end(), r) == reasons_.end())
      reasons_.push_back(r);
  }

  uint32_t pick_peer(user& u) {
    auto n = static_cast<uint32_t>(users_.size());
    switch (o_.what) {
    case scenario::pairs:
      return (u.idx ^ 1) < n ? (u.idx ^ 1) : 0;
    case scenario::offline:
      return 0;
    default: {
      auto p = static_cast<uint32_t>(u.rng() % (n - 1));
      return p >= u.idx ? p + 1 : p;
    }
    }
  }

  /// Sends one message from `u` to its group (REQUIRES: u.send_mtx held).
  /// The ledger tracks it as one directed conversation per receiving
  /// member (from, member), all numbered alike: each member must get each
  /// of the sender's messages once, in order.
  void send_group_locked(user& u, int64_t sched_ns) {
    payload_header h;
    h.from = u.idx;
    h.to = u.group;
    h.sched_ns = sched_ns;
    for (auto m : members_[u.group]) {
      if (m == u.idx)
        continue;
      auto k = ledger_.next(u.idx, m);
      if (h.k != 0 && k != h.k) {
        note_reason("ledger: member numbering diverged");
        return;
      }
      h.k = k;
    }
    auto r = u.c->send_to_group(group_ids_[u.group], h.encode(o_.payload),
                                send_opts_);
    if (!r) {
      for (auto m : members_[u.group])
        if (m != u.idx)
          ledger_.refused(u.idx, m, h.k);
      send_errors_.fetch_add(1, std::memory_order_relaxed);
      note_reason(r.error().to_string());
      return;
    }
    note_sent(sched_ns);
    ++u.in_flight;
  }

  /// Sends one message from `u` (REQUIRES: u.send_mtx held).
  void send_locked(user& u, uint32_t to, int64_t sched_ns) {
    if (o_.what == scenario::groups) {
      send_group_locked(u, sched_ns);
      return;
    }
    payload_header h;
    h.from = u.idx;
    h.to = to;
    h.k = ledger_.next(u.idx, to);
    h.sched_ns = sched_ns;
    auto r =
      u.c->send(users_[to]->cred.address, h.encode(o_.payload), send_opts_);
    if (!r) {
      ledger_.refused(u.idx, to, h.k);
      send_errors_.fetch_add(1, std::memory_order_relaxed);
      note_reason(r.error().to_string());
      return;
    }
    note_sent(sched_ns);
    ++u.in_flight;
  }

  /// After a send call: how late it was against its schedule (open loop;
  /// the closed loop sends when the window has room, on time by
  /// definition).
  void note_sent(int64_t sched_ns) {
    if (!closed_loop_ && record_latency_)
      send_lag_.record(
        static_cast<uint64_t>(std::max<int64_t>(0, now_ns() - sched_ns)));
  }

  /// Closed loop: one of `u`'s messages finished; keep the window full.
  void release(uint32_t from) {
    auto& u = *users_[from];
    std::lock_guard<std::mutex> g{u.send_mtx};
    if (u.in_flight > 0)
      --u.in_flight;
    if (closed_loop_ && sending_.load(std::memory_order_relaxed))
      while (u.in_flight < o_.window)
        send_locked(u, pick_peer(u), now_ns());
  }

  void fill(user& u) {
    std::lock_guard<std::mutex> g{u.send_mtx};
    if (o_.what == scenario::groups && !u.sender)
      return;
    while (u.in_flight < o_.window)
      send_locked(u, pick_peer(u), now_ns());
  }
};

class user_listener : public listener {
 public:
  user_listener(engine& e, user& u) : e_(e), u_(u) {
    // nop
  }

  void on_connection_status(connection_status s,
                            const std::string& reason) override {
    if (s == connection_status::online) {
      u_.online = true;
      if (!u_.ever_online.exchange(true))
        e_.online_ever_.fetch_add(1);
      auto phase = e_.phase_.load();
      if (u_.online_phase.exchange(phase) != phase)
        e_.online_events_.fetch_add(1);
      std::lock_guard<std::mutex> g{e_.mtx_};
      e_.cv_.notify_all();
      return;
    }
    u_.online = false;
    if (s == connection_status::authfail || s == connection_status::signout) {
      e_.login_failures_.fetch_add(1);
      e_.note_reason(std::string{to_string(s)} + ": " + reason);
      std::lock_guard<std::mutex> g{e_.mtx_};
      e_.cv_.notify_all();
    }
  }

  void on_message(const message& m, message_origin) override {
    if (m.outgoing)
      return;
    auto now = now_ns();
    auto h = payload_header::decode(m.payload);
    if (!h) {
      e_.ledger_.delivered(~0u, u_.idx, 0); // counts as unexpected
      return;
    }
    // A group message: the conversation is (sender, this member).
    auto to = m.group_id != 0 ? u_.idx : h->to;
    auto kind = e_.ledger_.delivered(h->from, to, h->k);
    if (kind == delivery::first || kind == delivery::reordered) {
      e_.delivered_.fetch_add(1, std::memory_order_relaxed);
      if (now >= e_.window_start_ns_.load(std::memory_order_relaxed) &&
          now <= e_.window_end_ns_.load(std::memory_order_relaxed))
        e_.delivered_in_window_.fetch_add(1, std::memory_order_relaxed);
      if (e_.record_latency_)
        e_.latency_.record(
          static_cast<uint64_t>(std::max<int64_t>(0, now - h->sched_ns)));
      e_.last_delivery_ns_.store(now, std::memory_order_relaxed);
      if (!e_.o_.receipts && m.group_id == 0)
        e_.release(h->from);
    }
  }

  void on_message_status(const message& m, const std::string& reason) override {
    auto h = payload_header::decode(m.payload);
    if (!h)
      return;
    if (m.status == message_status::sent && e_.record_latency_)
      e_.sent_latency_.record(
        static_cast<uint64_t>(std::max<int64_t>(0, now_ns() - h->sched_ns)));
    auto s = static_cast<uint8_t>(m.status);
    if (m.group_id != 0) {
      // Every receiving member's conversation reaches the status; the
      // message is done at SENT (the closed loop moves on).
      if (h->to >= e_.members_.size())
        return;
      for (auto member : e_.members_[h->to])
        if (member != h->from)
          e_.ledger_.status(h->from, member, h->k, s);
      if (is_failure(m.status))
        e_.note_reason(std::string{to_string(m.status)} + ": " + reason);
      if (m.status == message_status::sent || is_failure(m.status))
        e_.release(h->from);
      return;
    }
    e_.ledger_.status(h->from, h->to, h->k, s);
    if (is_failure(m.status)) {
      e_.note_reason(std::string{to_string(m.status)} + ": " + reason);
      e_.release(h->from);
    } else if (e_.o_.receipts && m.status == message_status::delivered) {
      e_.release(h->from);
    }
  }

 private:
  engine& e_;
  user& u_;
};

/// Raises the open-file limit to the hard limit (a socket per user).
void raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

/// A progress line on stderr once a second while a phase runs.
class progress {
 public:
  progress(engine& e, bool on, const char* phase) : e_(e) {
    if (!on)
      return;
    tty_ = ::isatty(2) != 0;
    t0_ = now_ns();
    thread_ = std::thread([this, phase] {
      std::unique_lock<std::mutex> g{mtx_};
      uint64_t last = 0;
      int64_t last_t = t0_;
      while (!cv_.wait_for(g, seconds(1), [&] { return stop_; })) {
        auto now = now_ns();
        auto d = e_.delivered_.load();
        auto rate = static_cast<double>(d - last) / secs(now - last_t);
        last = d;
        last_t = now;
        char buf[256];
        std::snprintf(
          buf, sizeof(buf),
          "[%s %5.1fs] online %llu/%zu  delivered %llu (%.0f/s)  p99 %.2f ms",
          phase, secs(now - t0_),
          static_cast<unsigned long long>(e_.online_ever_.load()),
          e_.users_.size(), static_cast<unsigned long long>(d), rate,
          static_cast<double>(e_.latency_.quantile(0.99)) / 1e6);
        std::cerr << buf << (tty_ ? "\r" : "\n") << std::flush;
      }
      if (tty_)
        std::cerr << '\n';
    });
  }

  ~progress() {
    if (!thread_.joinable())
      return;
    {
      std::lock_guard<std::mutex> g{mtx_};
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  engine& e_;
  bool tty_ = false;
  int64_t t0_ = 0;
  std::mutex mtx_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

/// Calls `begin(client)` for each of `which`, at most `window` logging in
/// at once; waits until each is online (`online_events_`) or refused, or
/// `limit` passed. Returns the seconds taken. (One caller is enough: with
/// 8 threads calling, 10,000 logins or reconnects took as long.)
template<class Begin>
double login_phase(engine& e, const std::vector<uint32_t>& which,
                   uint32_t window, seconds limit, Begin begin) {
  auto t0 = now_ns();
  e.phase_.fetch_add(1);
  auto base = e.online_events_.load() + e.login_failures_.load();
  auto deadline = steady_clock::now() + limit;
  auto settled = [&] {
    return e.online_events_.load() + e.login_failures_.load() - base;
  };
  uint64_t started = 0;
  for (auto i : which) {
    {
      std::unique_lock<std::mutex> g{e.mtx_};
      e.cv_.wait_until(g, deadline, [&] {
        return static_cast<int64_t>(started - settled()) <
               static_cast<int64_t>(window);
      });
    }
    if (steady_clock::now() >= deadline)
      break;
    begin(*e.users_[i]->c);
    ++started;
  }
  std::unique_lock<std::mutex> g{e.mtx_};
  e.cv_.wait_until(g, deadline, [&] { return settled() >= which.size(); });
  return secs(now_ns() - t0);
}

/// Starts `which` users (see login_phase).
double login(engine& e, const std::vector<uint32_t>& which, uint32_t window,
             seconds limit) {
  return login_phase(e, which, window, limit, [](client& c) { c.start(); });
}

/// Waits until nothing is outstanding or `limit` passed.
void settle(engine& e, double limit_s) {
  auto deadline = steady_clock::now() + duration<double>(limit_s);
  while (e.ledger_.outstanding() > 0 && steady_clock::now() < deadline)
    std::this_thread::sleep_for(milliseconds(20));
}

} // namespace

// -- report ------------------------------------------------------------------

std::string report::to_json() const {
  nlohmann::json j;
  j["scenario"] = scenario;
  j["mode"] = mode;
  j["users"] = users;
  j["duration_s"] = duration_s;
  j["rate"] = rate;
  j["window"] = window;
  j["payload"] = payload;
  j["attempted"] = attempted;
  j["sent"] = sent;
  j["delivered"] = delivered;
  j["delivered_per_s"] = delivered_per_s;
  if (groups > 0) {
    j["groups"] = groups;
    j["group_size"] = group_size;
  }
  j["latency_ms"] = {{"p50", lat_p50},
                     {"p90", lat_p90},
                     {"p99", lat_p99},
                     {"p999", lat_p999},
                     {"max", lat_max}};
  j["sent_latency_ms"] = {{"p50", sent_p50},
                          {"p90", sent_p90},
                          {"p99", sent_p99},
                          {"p999", sent_p999},
                          {"max", sent_max}};
  j["send_lag_ms"] = {{"p50", lag_p50}, {"p99", lag_p99}, {"max", lag_max}};
  j["login_s"] = login_s;
  if (reconnect_s > 0) {
    j["reconnect_s"] = reconnect_s;
    j["resumed"] = resumed;
  }
  if (restart_s > 0) {
    j["restart_s"] = restart_s;
    j["restart_resumed"] = restart_resumed;
  }
  j["drain_s"] = drain_s;
  j["drain_per_s"] = drain_per_s;
  j["lost"] = lost;
  j["duplicated"] = duplicated;
  j["reordered"] = reordered;
  j["unexpected"] = unexpected;
  j["pending"] = pending;
  j["failed"] = failed;
  j["send_errors"] = send_errors;
  j["login_failures"] = login_failures;
  j["server_rss_mb"] = server_rss_mb;
  j["server_rss_before_mb"] = server_rss_before_mb;
  j["rss_per_user_kib"] = rss_per_user_kib;
  j["server_cpu_s"] = server_cpu_s;
  j["sim_cpu_s"] = sim_cpu_s;
  j["threads"] = threads;
  j["callback_threads"] = callback_threads;
  j["server_threads"] = server_threads;
  j["server_kills"] = server_kills;
  j["connection_drops"] = connection_drops;
  j["verified"] = verified();
  return j.dump(2);
}

namespace {
std::string fixed2(double v) {
  char b[32];
  std::snprintf(b, sizeof(b), "%.2f", v);
  return b;
}
} // namespace

std::string report::to_table() const {
  char buf[2048];
  std::snprintf(
    buf, sizeof(buf),
    "scenario        %s (%s loop)\n"
    "users           %u\n"
    "duration        %.1f s\n"
    "login           %.2f s (all users online)\n"
    "sent            %llu (of %llu attempted; %llu failed)\n"
    "delivered       %llu  (%.0f msgs/s)\n"
    "latency ms      p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f\n"
    "to SENT ms      p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f\n"
    "%s%s%s%s%s%s"
    "server          rss %.1f MiB (before login %.1f MiB, %.1f KiB/user)  "
    "cpu %.1f s\n"
    "simulator       cpu %.1f s  threads %u + %u callback\n"
    "verification    lost %llu  duplicated %llu  reordered %llu  "
    "unexpected %llu  pending %llu  => %s\n",
    scenario.c_str(), mode.c_str(), users, duration_s, login_s,
    static_cast<unsigned long long>(sent),
    static_cast<unsigned long long>(attempted),
    static_cast<unsigned long long>(failed),
    static_cast<unsigned long long>(delivered), delivered_per_s, lat_p50,
    lat_p90, lat_p99, lat_p999, lat_max, sent_p50, sent_p90, sent_p99,
    sent_p999, sent_max,
    mode == "open" ? ("send lag ms     p50 " + fixed2(lag_p50) + "  p99 " +
                      fixed2(lag_p99) + "  max " + fixed2(lag_max) +
                      " (the simulator's own delay; in the latencies)\n")
                       .c_str()
                   : "",
    groups > 0 ? ("groups          " + std::to_string(groups) + " of " +
                  std::to_string(group_size) +
                  " members (deliveries count each member)\n")
                   .c_str()
               : "",
    reconnect_s > 0
      ? ("reconnect       " + fixed2(reconnect_s) + " s (all users back; " +
         std::to_string(resumed) + " resumed TLS)\n")
          .c_str()
      : "",
    restart_s > 0 ? ("server restart  " + fixed2(restart_s) +
                     " s (SIGTERM to all users back; " +
                     std::to_string(restart_resumed) + " resumed TLS)\n")
                      .c_str()
                  : "",
    drain_s > 0
      ? ("drain           " + std::to_string(drain_s) + " s (" +
         std::to_string(static_cast<uint64_t>(drain_per_s)) + " msgs/s)\n")
          .c_str()
      : "",
    server_kills + connection_drops > 0
      ? ("faults          " + std::to_string(server_kills) +
         " server kills (kill -9 + restart), " +
         std::to_string(connection_drops) + " connections dropped\n")
          .c_str()
      : "",
    server_rss_mb, server_rss_before_mb, rss_per_user_kib, server_cpu_s,
    sim_cpu_s, threads, callback_threads, static_cast<unsigned long long>(lost),
    static_cast<unsigned long long>(duplicated),
    static_cast<unsigned long long>(reordered),
    static_cast<unsigned long long>(unexpected),
    static_cast<unsigned long long>(pending), verified() ? "OK" : "FAILED");
  return buf;
}

// -- run ---------------------------------------------------------------------

result<report> run(const options& o) {
  if (o.users < 2)
    return status{status_code::invalid_argument,
                  "a simulation needs at least 2 users (--users)"};
  if (o.what == scenario::pairs && o.users % 2 != 0)
    return status{status_code::invalid_argument,
                  "the pairs scenario needs an even number of users"};
  if (o.payload < payload_header::size)
    return status{status_code::invalid_argument,
                  "--payload must be at least " +
                    std::to_string(payload_header::size) +
                    " bytes (the simulator's header)"};
  if (o.what == scenario::groups && (o.group_size < 2 || o.group_size > 10000))
    return status{status_code::invalid_argument,
                  "--group-size must be 2 to 10000 members"};
  bool loaded = o.what == scenario::chat || o.what == scenario::pairs ||
                o.what == scenario::groups;
  if (o.restart_server && (!o.spawn_server || o.what != scenario::storm))
    return status{status_code::invalid_argument,
                  "--restart-server restarts the simulator's own parleyd "
                  "after a storm: use it with storm and --spawn-server"};
  if (o.kill_server > 0 && !o.spawn_server)
    return status{status_code::invalid_argument,
                  "--kill-server kills the simulator's own parleyd: add "
                  "--spawn-server"};
  if ((o.kill_server > 0 || o.drop_rate > 0) && !loaded)
    return status{status_code::invalid_argument,
                  "faults (--kill-server, --drop-connections) are injected "
                  "during the load of the chat and pairs scenarios"};
  raise_fd_limit();

  // The server.
  std::unique_ptr<spawned_server> spawned;
  admin_options ao;
  ao.host = o.host;
  ao.port = o.port;
  ao.admin_key = o.admin_key;
  ao.ca_file = o.ca_file;
  int server_pid = o.server_pid;
  if (o.spawn_server) {
    auto s = spawned_server::start(o);
    if (!s)
      return s.error();
    spawned = std::move(*s);
    ao.host = "127.0.0.1";
    ao.port = spawned->port();
    ao.admin_key = spawned->admin_key();
    ao.ca_file = spawned->cert();
    server_pid = spawned->pid();
  }

  // The users.
  std::vector<credential> creds;
  if (!o.tokens_file.empty() && !o.spawn_server)
    creds = read_tokens(o.tokens_file);
  if (creds.size() < o.users) {
    if (ao.admin_key.empty())
      return status{status_code::invalid_argument,
                    "no users: give --tokens FILE with " +
                      std::to_string(o.users) +
                      " 'user token' lines, or the admin key (--admin-key "
                      "or --data-dir) to create them, or --spawn-server"};
    auto made = make_users(ao, o.app, o.users);
    if (!made)
      return made.error();
    creds = std::move(*made);
    if (!o.tokens_file.empty() && !o.spawn_server) {
      std::ofstream out{o.tokens_file, std::ios::trunc};
      for (auto& c : creds)
        out << c.address << ' ' << c.token << '\n';
    }
  }
  creds.resize(o.users);

  // The runtime and the clients.
  runtime_options ro;
  ro.threads = o.threads;
  ro.callback_threads = o.callback_threads;
  auto rt = runtime::create(ro);
  if (!rt)
    return rt.error();
  auto eo = o;
  if (o.what == scenario::groups)
    eo.receipts = false; // a group message ends at SENT here
  engine e{eo};
  e.closed_loop_ = o.rate <= 0;
  e.record_latency_ = o.what != scenario::offline;
  e.send_opts_.flags = e.o_.receipts ? flags::delivery_receipt : 0;
  for (uint32_t i = 0; i < o.users; ++i) {
    auto u = std::make_unique<user>();
    u->idx = i;
    u->cred = creds[i];
    u->rng.seed(i + 1);
    if (o.what == scenario::groups) {
      u->group = i / o.group_size;
      auto pos = i % o.group_size;
      u->sender = o.group_senders == 0 || pos < o.group_senders;
    }
    client_options co;
    co.app_id = o.app;
    co.token = u->cred.token;
    co.host = ao.host;
    co.port = ao.port;
    co.ca_file = ao.ca_file;
    // One device per simulated user, the same in every run: a new device
    // would start at the least advanced cursor of the user's devices and be
    // given what earlier runs' devices did not store.
    co.device_id = "parley-sim-device";
    co.memory_messages = o.client_messages;
    co.memory_idle_conversations = o.client_conversations;
    // Back soon after a fault: the run waits for what is in flight.
    co.backoff_max = milliseconds(2000);
    co.tls_resume = o.tls_resume;
    auto c = client::create(co, *rt);
    if (!c)
      return c.error().annotate("creating client " + u->cred.address);
    u->c = std::move(*c);
    u->l = std::make_shared<user_listener>(e, *u);
    u->c->add_listener(u->l);
    e.users_.push_back(std::move(u));
  }

  report r;
  r.scenario = to_string(o.what);
  r.mode =
    o.what == scenario::storm ? "-" : (e.closed_loop_ ? "closed" : "open");
  r.users = o.users;
  r.rate = o.rate;
  r.window = e.closed_loop_ ? o.window : 0;
  r.payload = o.payload;
  r.threads = o.threads;
  r.callback_threads = o.callback_threads;
  r.server_threads = o.spawn_server ? o.server_threads : 0;
  r.server_rss_before_mb = rss_mb(server_pid);

  // Log in (everybody but the offline scenario's receiver).
  std::vector<uint32_t> who;
  for (uint32_t i = o.what == scenario::offline ? 1 : 0; i < o.users; ++i)
    who.push_back(i);
  {
    progress p{e, o.progress, "login"};
    r.login_s =
      login(e, who, std::max<uint32_t>(1, o.connect_window), seconds(120));
  }
  r.login_failures = who.size() - e.online_ever_.load();
  if (o.what == scenario::groups) {
    // The first member of each group creates it with the others.
    uint32_t n_groups = (o.users + o.group_size - 1) / o.group_size;
    e.members_.resize(n_groups);
    for (uint32_t i = 0; i < o.users; ++i)
      e.members_[i / o.group_size].push_back(i);
    for (uint32_t g = 0; g < n_groups; ++g) {
      auto& ms = e.members_[g];
      std::vector<group_member> others;
      for (size_t k = 1; k < ms.size(); ++k)
        others.push_back(group_member{e.users_[ms[k]]->cred.address, 0});
      auto made = e.users_[ms[0]]->c->create_group(
        "sim-group-" + std::to_string(g), others);
      if (!made)
        return made.error().annotate("creating group " + std::to_string(g));
      e.group_ids_.push_back(made->id);
    }
    r.group_size = o.group_size;
    r.groups = n_groups;
  }

  auto cpu0_server = cpu_s(server_pid);
  auto cpu0_self = self_cpu_s();
  if (o.what == scenario::storm) {
    std::this_thread::sleep_for(duration<double>(o.idle_s));
    r.server_rss_mb = rss_mb(server_pid);
    r.rss_per_user_kib =
      (r.server_rss_mb - r.server_rss_before_mb) * 1024.0 / o.users;
    if (o.reconnect) {
      progress p{e, o.progress, "reconnect"};
      r.reconnect_s =
        login_phase(e, who, std::max<uint32_t>(1, o.connect_window),
                    seconds(120), [](client& c) { c.reconnect(); });
      for (auto i : who)
        if (e.users_[i]->c->tls_resumed())
          ++r.resumed;
    }
    if (o.restart_server) {
      progress p{e, o.progress, "restart"};
      auto t0 = now_ns();
      e.phase_.fetch_add(1);
      auto base = e.online_events_.load();
      if (auto st = spawned->restart(); !st)
        return st.annotate("restarting parleyd");
      server_pid = spawned->pid();
      // Each client reconnects by itself (SHUTDOWN, then its backoff).
      auto deadline = steady_clock::now() + seconds(120);
      std::unique_lock<std::mutex> g{e.mtx_};
      e.cv_.wait_until(g, deadline, [&] {
        return e.online_events_.load() - base >= who.size();
      });
      g.unlock();
      r.restart_s = secs(now_ns() - t0);
      for (auto i : who)
        if (e.users_[i]->c->tls_resumed())
          ++r.restart_resumed;
    }
  } else if (o.what == scenario::offline) {
    // Queue the messages to user 0 while it is offline...
    uint64_t n = o.offline_messages;
    {
      progress p{e, o.progress, "queue"};
      auto t0 = now_ns();
      for (uint64_t i = 0; i < n; ++i) {
        auto& u = *e.users_[1 + i % (o.users - 1)];
        std::lock_guard<std::mutex> g{u.send_mtx};
        e.send_locked(u, 0, now_ns());
      }
      // ...wait until every one is SENT (durable on the server)...
      auto deadline = steady_clock::now() + seconds(300);
      while (e.ledger_.finish().sent + e.ledger_.finish().failed <
               n - e.send_errors_.load() &&
             steady_clock::now() < deadline)
        std::this_thread::sleep_for(milliseconds(50));
      r.duration_s = secs(now_ns() - t0);
    }
    // ...then bring it online and time the drain.
    progress p{e, o.progress, "drain"};
    auto t0 = now_ns();
    e.window_start_ns_ = t0;
    e.window_end_ns_ = INT64_MAX;
    e.users_[0]->c->start();
    auto deadline = steady_clock::now() + duration<double>(o.settle_s + 300);
    while (e.delivered_.load() < n - e.send_errors_.load() &&
           steady_clock::now() < deadline)
      std::this_thread::sleep_for(milliseconds(5));
    auto last = e.last_delivery_ns_.load();
    r.drain_s = last > t0 ? secs(last - t0) : 0;
    r.drain_per_s =
      r.drain_s > 0 ? static_cast<double>(e.delivered_.load()) / r.drain_s : 0;
    settle(e, o.settle_s);
  } else {
    // chat and pairs: the load for the duration, then the settling.
    progress p{e, o.progress, to_string(o.what)};
    auto t0 = now_ns();
    auto t_end = t0 + static_cast<int64_t>(o.duration_s * 1e9);
    e.window_start_ns_ = t0;
    e.window_end_ns_ = t_end;
    e.sending_ = true;
    // Faults are due at these times; wait_until() injects them on the way.
    int64_t next_kill = INT64_MAX, next_drop = INT64_MAX;
    auto kill_at = [&](uint64_t i) {
      return t0 + static_cast<int64_t>(o.duration_s * 1e9 *
                                       static_cast<double>(i + 1) /
                                       (o.kill_server + 1));
    };
    if (o.kill_server > 0)
      next_kill = kill_at(0);
    if (o.drop_rate > 0)
      next_drop = t0 + static_cast<int64_t>(1e9 / o.drop_rate);
    std::minstd_rand victim{11};
    status fault_error;
    auto wait_until = [&](int64_t t) {
      for (;;) {
        auto next = std::min({t, next_kill, next_drop});
        std::this_thread::sleep_until(
          steady_clock::time_point(nanoseconds(next)));
        auto now = now_ns();
        if (now >= next_kill && fault_error.ok()) {
          if (auto st = spawned->kill_and_restart(); !st) {
            fault_error = st.annotate("restarting parleyd after kill -9");
          } else {
            server_pid = spawned->pid();
            ++r.server_kills;
          }
          next_kill = r.server_kills < o.kill_server && fault_error.ok()
                        ? kill_at(r.server_kills)
                        : INT64_MAX;
        }
        if (now >= next_drop) {
          auto& u = *e.users_[victim() % e.users_.size()];
          if (u.c->reconnect().ok())
            ++r.connection_drops;
          next_drop += static_cast<int64_t>(1e9 / o.drop_rate);
        }
        if (now >= t)
          return;
      }
    };
    if (e.closed_loop_) {
      for (auto& u : e.users_)
        e.fill(*u);
      wait_until(t_end);
    } else {
      // Open loop: message i is due at t0 + i / rate; latency counts from
      // then, so a stall shows in it even when sends fall behind.
      std::minstd_rand pick{7};
      uint64_t i = 0;
      for (;;) {
        auto now = now_ns();
        if (now >= t_end)
          break;
        auto due = static_cast<uint64_t>(secs(now - t0) * o.rate);
        for (; i < due; ++i) {
          auto sched =
            t0 + static_cast<int64_t>(static_cast<double>(i) / o.rate * 1e9);
          auto* up = e.users_[pick() % o.users].get();
          while (!up->sender) // groups: only the senders send
            up = e.users_[pick() % o.users].get();
          auto& u = *up;
          std::lock_guard<std::mutex> g{u.send_mtx};
          e.send_locked(u, e.pick_peer(u), sched);
        }
        // Wake at most every 250 us and send what fell due meanwhile: a
        // wake-up per message (every 50 us at 20,000/s) cost a context
        // switch each; the wait still counts in the latency.
        auto next =
          t0 + static_cast<int64_t>(static_cast<double>(i + 1) / o.rate * 1e9);
        next = std::max(next, now + 250'000);
        wait_until(std::min(next, t_end));
      }
    }
    e.sending_ = false;
    r.duration_s = secs(now_ns() - t0);
    settle(e, o.settle_s);
    if (!fault_error.ok())
      return fault_error;
  }
  r.server_cpu_s =
    cpu_s(server_pid) - cpu0_server + (spawned ? spawned->killed_cpu_s() : 0);
  r.sim_cpu_s = self_cpu_s() - cpu0_self;
  if (o.what != scenario::storm)
    r.server_rss_mb = rss_mb(server_pid);

  auto t = e.ledger_.finish();
  r.attempted = t.attempted;
  r.sent = t.sent;
  r.delivered = t.delivered;
  r.lost = t.lost;
  r.duplicated = t.duplicated;
  r.reordered = t.reordered;
  r.unexpected = t.unexpected;
  r.pending = t.pending;
  r.failed = t.failed;
  r.send_errors = e.send_errors_.load();
  r.delivered_in_window = e.delivered_in_window_.load();
  if (loaded)
    r.delivered_per_s =
      static_cast<double>(r.delivered_in_window) / std::max(1e-9, r.duration_s);
  else if (o.what == scenario::offline)
    r.delivered_per_s = r.drain_per_s;
  auto ms = [](const histogram& h, double q) { // q = 1: the exact max
    return static_cast<double>(h.quantile(q)) / 1e6;
  };
  r.lat_p50 = ms(e.latency_, 0.5);
  r.lat_p90 = ms(e.latency_, 0.9);
  r.lat_p99 = ms(e.latency_, 0.99);
  r.lat_p999 = ms(e.latency_, 0.999);
  r.lat_max = ms(e.latency_, 1.0);
  r.sent_p50 = ms(e.sent_latency_, 0.5);
  r.sent_p90 = ms(e.sent_latency_, 0.9);
  r.sent_p99 = ms(e.sent_latency_, 0.99);
  r.sent_p999 = ms(e.sent_latency_, 0.999);
  r.sent_max = ms(e.sent_latency_, 1.0);
  r.lag_p50 = ms(e.send_lag_, 0.5);
  r.lag_p99 = ms(e.send_lag_, 0.99);
  r.lag_max = ms(e.send_lag_, 1.0);
  {
    std::lock_guard<std::mutex> g{e.reasons_mtx_};
    for (auto& why : e.reasons_)
      std::cerr << "parley-sim: seen: " << why << '\n';
  }
  if (t.lost + t.pending > 0) {
    // Where it got stuck: the users not online and the open conversations.
    std::string offline;
    size_t n_offline = 0;
    for (auto& u : e.users_)
      if (u->c->connection() != connection_status::online) {
        if (++n_offline <= 10)
          offline += " " + u->cred.address + "(" +
                     std::string{to_string(u->c->connection())} + ")";
      }
    std::cerr << "parley-sim: after the settle time (" << o.settle_s
              << " s): " << n_offline << " users not online:" << offline
              << '\n';
    for (auto& s : e.ledger_.stuck(10))
      std::cerr << "parley-sim: open: " << s << '\n';
  }
  // The clients go before the runtime and the server.
  e.users_.clear();
  rt->reset();
  return r;
}

} // namespace parley::sim
