// parley: the command-line client and admin tool.
//
//   parley admin app add demo
//   parley admin user add demo alice           # prints alice's access token
//   parley admin user add demo --file names    # one "ADDRESS TOKEN" line each
//   parley admin token revoke demo alice
//   parley admin list users demo
//
// Connection settings come from flags, else the environment (PARLEY_SERVER,
// PARLEY_ADMIN_KEY, PARLEY_CA, PARLEY_FINGERPRINT), else the local data
// directory of a parleyd started by scripts/run (./parley-data: admin.key
// and cert.pem).

#include <parley/admin.hpp>
#include <parley/client.hpp>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <pthread.h>
#include <sstream>

namespace {

struct globals {
  std::string server;
  std::string data_dir = "parley-data";
  std::string admin_key;
  std::string ca_file;
  std::string fingerprint;
  unsigned timeout_s = 10;
  // user commands
  std::string app;
  std::string token;
  std::string database;
};

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string{v} : fallback;
}

/// Fills what the user did not give from the environment and data dir.
parley::result<parley::admin_options> resolve(const globals& g) {
  parley::admin_options o;
  o.timeout = std::chrono::seconds(g.timeout_s);
  auto server =
    g.server.empty() ? env_or("PARLEY_SERVER", "127.0.0.1:5290") : g.server;
  auto colon = server.rfind(':');
  if (colon == std::string::npos || colon + 1 == server.size())
    return parley::status{parley::status_code::invalid_argument,
                          "--server wants HOST:PORT, got '" + server + "'"};
  o.host = server.substr(0, colon);
  if (!o.host.empty() && o.host.front() == '[' && o.host.back() == ']')
    o.host = o.host.substr(1, o.host.size() - 2);
  try {
    o.port = static_cast<uint16_t>(std::stoul(server.substr(colon + 1)));
  } catch (...) {
    return parley::status{parley::status_code::invalid_argument,
                          "--server wants HOST:PORT, got '" + server + "'"};
  }
  namespace fs = std::filesystem;
  o.admin_key =
    g.admin_key.empty() ? env_or("PARLEY_ADMIN_KEY", "") : g.admin_key;
  if (o.admin_key.empty()) {
    std::ifstream in{fs::path{g.data_dir} / "admin.key"};
    std::getline(in, o.admin_key);
  }
  o.fingerprint =
    g.fingerprint.empty() ? env_or("PARLEY_FINGERPRINT", "") : g.fingerprint;
  o.ca_file = g.ca_file.empty() ? env_or("PARLEY_CA", "") : g.ca_file;
  if (o.ca_file.empty() && o.fingerprint.empty()) {
    auto cert = fs::path{g.data_dir} / "cert.pem";
    if (fs::exists(cert))
      o.ca_file = cert.string();
  }
  if (o.admin_key.empty())
    return parley::status{parley::status_code::invalid_argument,
                          "no admin key: pass --admin-key, set "
                          "PARLEY_ADMIN_KEY, or run where parleyd's data "
                          "directory is (--data-dir, default ./parley-data)"};
  return o;
}

int fail(const parley::status& st) {
  std::cerr << "parley: " << st.to_string() << '\n';
  return 1;
}

std::string iso_time(uint64_t ms) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

int print_token(const parley::result<parley::access_token>& t) {
  if (!t)
    return fail(t.error());
  std::cout << "app      " << t->app_id << "\nuser     " << t->address
            << "\ntoken    " << t->token << "\nexpires  "
            << iso_time(t->expires_at_ms) << '\n';
  return 0;
}

/// Prints what a client reports, and lets the command wait for a state.
class printer : public parley::listener {
 public:
  explicit printer(bool verbose) : verbose_(verbose) {
    // nop
  }

  void on_connection_status(parley::connection_status s,
                            const std::string& reason) override {
    std::lock_guard<std::mutex> g{mtx_};
    status_ = s;
    reason_ = reason;
    if (verbose_)
      std::cerr << "[" << parley::to_string(s) << "]"
                << (reason.empty() ? "" : " " + reason) << std::endl;
    cv_.notify_all();
  }

  void on_message(const parley::message& m, parley::message_origin) override {
    std::lock_guard<std::mutex> g{mtx_};
    auto where = m.group_id != 0 ? "[group " + std::to_string(m.group_id) + "] "
                                 : std::string{};
    if (m.outgoing)
      std::cout << where << "-> " << (m.group_id != 0 ? "group" : m.peer)
                << ": " << m.payload << std::endl;
    else
      std::cout << where << m.sender << ": " << m.payload << std::endl;
  }

  void on_message_status(const parley::message& m,
                         const std::string& reason) override {
    std::lock_guard<std::mutex> g{mtx_};
    last_[m.id] = m.status;
    if (verbose_)
      std::cerr << "[message " << m.id << " to "
                << (m.group_id != 0 ? "group " + std::to_string(m.group_id)
                                    : m.peer)
                << ": " << parley::to_string(m.status) << "]"
                << (reason.empty() ? "" : " " + reason) << std::endl;
    if (parley::is_failure(m.status))
      failure_[m.id] = reason;
    cv_.notify_all();
  }

  void on_group_event(const parley::group_event& ev) override {
    static const char* kinds[] = {
      "?",    "created",          "members added", "members removed",
      "left", "settings changed", "deleted"};
    auto k = static_cast<size_t>(ev.kind);
    std::lock_guard<std::mutex> g{mtx_};
    std::cout << "[group " << ev.group_id << " '" << ev.name << "'] "
              << (k < 7 ? kinds[k] : "?") << " by " << ev.actor;
    for (auto& m : ev.members)
      std::cout << ' ' << m.address;
    std::cout << std::endl;
  }

  void on_presence(const parley::presence& p) override {
    std::lock_guard<std::mutex> g{mtx_};
    std::cout << "[presence] "
              << (p.group_id != 0
                    ? "[group " + std::to_string(p.group_id) + "] "
                    : std::string{})
              << p.peer << ' ' << parley::to_string(p.kind) << std::endl;
  }

  /// Waits until online, or a final failure; returns the status reached.
  parley::connection_status wait_online(std::chrono::seconds within) {
    using cs = parley::connection_status;
    std::unique_lock<std::mutex> g{mtx_};
    cv_.wait_for(g, within, [&] {
      return status_ == cs::online || status_ == cs::authfail ||
             status_ == cs::signout || status_ == cs::connect_failure;
    });
    return status_;
  }

  /// Waits until message `id` is SENT (or failed).
  parley::message_status wait_sent(uint64_t id, std::chrono::seconds within) {
    std::unique_lock<std::mutex> g{mtx_};
    cv_.wait_for(g, within, [&] {
      auto i = last_.find(id);
      return i != last_.end() && i->second != parley::message_status::outbox;
    });
    auto i = last_.find(id);
    return i == last_.end() ? parley::message_status::outbox : i->second;
  }

  std::string reason() {
    std::lock_guard<std::mutex> g{mtx_};
    return reason_;
  }

  /// Writes `text` to stdout whole: the listener prints from the client's
  /// thread, so the command's own output must not interleave with it.
  void print(const std::string& text) {
    std::lock_guard<std::mutex> g{mtx_};
    std::cout << text << std::flush;
  }

  std::string failure(uint64_t id) {
    std::lock_guard<std::mutex> g{mtx_};
    return failure_[id];
  }

 private:
  bool verbose_;
  std::mutex mtx_;
  std::condition_variable cv_;
  parley::connection_status status_ = parley::connection_status::unknown;
  std::string reason_;
  std::map<uint64_t, parley::message_status> last_;
  std::map<uint64_t, std::string> failure_;
};

/// Client options from flags, environment and the local data directory.
parley::result<parley::client_options> client_opts(const globals& g) {
  parley::client_options o;
  auto server =
    g.server.empty() ? env_or("PARLEY_SERVER", "127.0.0.1:5290") : g.server;
  auto colon = server.rfind(':');
  if (colon == std::string::npos)
    return parley::status{parley::status_code::invalid_argument,
                          "--server wants HOST:PORT, got '" + server + "'"};
  o.host = server.substr(0, colon);
  o.port = static_cast<uint16_t>(std::atoi(server.c_str() + colon + 1));
  o.app_id = g.app.empty() ? env_or("PARLEY_APP", "") : g.app;
  o.token = g.token.empty() ? env_or("PARLEY_TOKEN", "") : g.token;
  o.database = g.database;
  o.fingerprint =
    g.fingerprint.empty() ? env_or("PARLEY_FINGERPRINT", "") : g.fingerprint;
  o.ca_file = g.ca_file.empty() ? env_or("PARLEY_CA", "") : g.ca_file;
  if (o.ca_file.empty() && o.fingerprint.empty()) {
    auto cert = std::filesystem::path{g.data_dir} / "cert.pem";
    if (std::filesystem::exists(cert))
      o.ca_file = cert.string();
  }
  if (o.app_id.empty() || o.token.empty())
    return parley::status{parley::status_code::invalid_argument,
                          "pass --app and --token (or set PARLEY_APP and "
                          "PARLEY_TOKEN): the token comes from 'parley admin "
                          "user add APP USER'"};
  return o;
}

/// Blocks SIGINT/SIGTERM in every thread started from here on.
sigset_t block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  return set;
}

/// Creates, starts and waits until online; prints why not and returns null.
std::unique_ptr<parley::client> go_online(const globals& g,
                                          std::shared_ptr<printer> out) {
  auto o = client_opts(g);
  if (!o) {
    fail(o.error());
    return nullptr;
  }
  auto c = parley::client::create(*o);
  if (!c) {
    fail(c.error());
    return nullptr;
  }
  (*c)->add_listener(out);
  (*c)->start();
  auto s = out->wait_online(std::chrono::seconds(g.timeout_s));
  if (s != parley::connection_status::online) {
    std::cerr << "parley: " << parley::to_string(s) << ": "
              << (out->reason().empty() ? "no answer in time" : out->reason())
              << '\n';
    return nullptr;
  }
  return std::move(*c);
}

} // namespace

int main(int argc, char** argv) {
  globals g;
  CLI::App app{"parley: command-line client and admin tool for parleyd"};
  app.require_subcommand(1);
  app.add_option("--server", g.server,
                 "HOST:PORT of parleyd (env PARLEY_SERVER; default "
                 "127.0.0.1:5290)");
  app
    .add_option("--data-dir", g.data_dir,
                "a local parleyd data directory to read admin.key and "
                "cert.pem from")
    ->capture_default_str();
  app.add_option("--admin-key", g.admin_key,
                 "admin key (env PARLEY_ADMIN_KEY)");
  app.add_option("--ca", g.ca_file,
                 "PEM file to trust: the server's certificate (env PARLEY_CA)");
  app.add_option("--fingerprint", g.fingerprint,
                 "pin the server certificate's SHA-256 fingerprint (env "
                 "PARLEY_FINGERPRINT)");
  app.add_option("--timeout", g.timeout_s, "seconds to wait for the server")
    ->capture_default_str();

  auto* admin = app.add_subcommand("admin", "administer apps, users, tokens");
  admin->require_subcommand(1);

  // The command to run once parsing is done; it gets a connected client.
  std::function<int(parley::admin_client&)> action;
  std::string app_id, address, name, token, after;
  uint32_t ttl = 0, limit = 0;

  auto* apps = admin->add_subcommand("app", "apps")->require_subcommand(1);
  auto* app_add = apps->add_subcommand("add", "create an app");
  app_add->add_option("APP", app_id, "app id")->required();
  app_add->add_option("--name", name, "display name");
  app_add->callback([&] {
    action = [&](parley::admin_client& c) {
      auto st = c.app_add(app_id, name);
      if (!st)
        return fail(st);
      std::cout << "app '" << app_id << "' created\n";
      return 0;
    };
  });
  auto* app_del = apps->add_subcommand("delete", "delete an app and its data");
  app_del->add_option("APP", app_id, "app id")->required();
  app_del->callback([&] {
    action = [&](parley::admin_client& c) {
      auto st = c.app_delete(app_id);
      if (!st)
        return fail(st);
      std::cout << "app '" << app_id << "' deleted\n";
      return 0;
    };
  });

  auto* users = admin->add_subcommand("user", "users")->require_subcommand(1);
  std::vector<std::string> addresses;
  std::string addresses_file;
  auto* user_add = users->add_subcommand(
    "add", "create users (if new) and print an access token for each");
  user_add->add_option("APP", app_id, "app id")->required();
  user_add->add_option("ADDRESS", addresses, "user addresses");
  user_add->add_option("--file", addresses_file,
                       "read more addresses from this file, one per line "
                       "('-': standard input)");
  user_add->add_option("--name", name, "display name (one user only)");
  user_add->add_option("--ttl", ttl, "token lifetime in seconds (0: server's)");
  user_add->callback([&] {
    action = [&](parley::admin_client& c) {
      if (!addresses_file.empty()) {
        std::ifstream file;
        if (addresses_file != "-") {
          file.open(addresses_file);
          if (!file) {
            std::cerr << "parley: cannot read '" << addresses_file
                      << "': " << std::strerror(errno) << '\n';
            return 2;
          }
        }
        std::istream& in = addresses_file == "-" ? std::cin : file;
        std::string line;
        while (std::getline(in, line)) {
          // Blanks around an address (and a CRLF file's CR) are not part of
          // it; blank lines are skipped.
          auto first = line.find_first_not_of(" \t\r");
          if (first == std::string::npos)
            continue;
          auto last = line.find_last_not_of(" \t\r");
          addresses.push_back(line.substr(first, last - first + 1));
        }
        if (in.bad()) {
          std::cerr << "parley: reading '" << addresses_file
                    << "' failed: " << std::strerror(errno) << '\n';
          return 2;
        }
      }
      if (addresses.empty()) {
        std::cerr << "parley: give the user's address, or several, or "
                     "--file with one per line\n";
        return 2;
      }
      // One address on the command line: its token alone. From a file,
      // always "ADDRESS TOKEN" lines, however many it held.
      if (addresses.size() == 1 && addresses_file.empty())
        return print_token(c.user_add(app_id, addresses[0], name, ttl));
      if (!name.empty()) {
        std::cerr << "parley: --name names one user: add that one by "
                     "itself\n";
        return 2;
      }
      // Many: a thousand per transaction on the server; one line each,
      // "ADDRESS TOKEN", for scripts (parley-sim --tokens reads it).
      auto r = c.users_add(app_id, addresses, ttl);
      if (!r)
        return fail(r.error());
      for (auto& t : *r)
        std::cout << t.address << ' ' << t.token << '\n';
      return 0;
    };
  });
  for (auto [verb, disable] : {std::pair{"disable", true}, {"enable", false}}) {
    auto* sub =
      users->add_subcommand(verb, disable ? "disable a user (ends its "
                                            "sessions)"
                                          : "enable a disabled user");
    sub->add_option("APP", app_id, "app id")->required();
    sub->add_option("ADDRESS", address, "user address")->required();
    sub->callback([&, disable = disable] {
      action = [&, disable](parley::admin_client& c) {
        auto st = c.user_disable(app_id, address, disable);
        if (!st)
          return fail(st);
        std::cout << "user '" << address << "' "
                  << (disable ? "disabled" : "enabled") << '\n';
        return 0;
      };
    });
  }
  auto* user_del =
    users->add_subcommand("delete", "delete a user, its tokens and log");
  user_del->add_option("APP", app_id, "app id")->required();
  user_del->add_option("ADDRESS", address, "user address")->required();
  user_del->callback([&] {
    action = [&](parley::admin_client& c) {
      auto st = c.user_delete(app_id, address);
      if (!st)
        return fail(st);
      std::cout << "user '" << address << "' deleted\n";
      return 0;
    };
  });

  auto* tokens =
    admin->add_subcommand("token", "tokens")->require_subcommand(1);
  auto* tok_add = tokens->add_subcommand("add", "issue another token");
  tok_add->add_option("APP", app_id, "app id")->required();
  tok_add->add_option("ADDRESS", address, "user address")->required();
  tok_add->add_option("--ttl", ttl, "token lifetime in seconds (0: server's)");
  tok_add->callback([&] {
    action = [&](parley::admin_client& c) {
      return print_token(c.token_add(app_id, address, ttl));
    };
  });
  auto* tok_rev = tokens->add_subcommand(
    "revoke", "revoke a token (all of the user's without --token)");
  tok_rev->add_option("APP", app_id, "app id")->required();
  tok_rev->add_option("ADDRESS", address, "user address")->required();
  tok_rev->add_option("--token", token, "the token to revoke");
  tok_rev->callback([&] {
    action = [&](parley::admin_client& c) {
      auto st = c.token_revoke(app_id, address, token);
      if (!st)
        return fail(st);
      std::cout << (token.empty() ? "all tokens of '" + address + "'"
                                  : std::string{"the token"})
                << " revoked\n";
      return 0;
    };
  });

  auto* list = admin->add_subcommand("list", "list apps or users (JSON)")
                 ->require_subcommand(1);
  auto* list_apps = list->add_subcommand("apps", "list apps");
  auto* list_users = list->add_subcommand("users", "list the users of an app");
  list_users->add_option("APP", app_id, "app id")->required();
  for (auto* sub : {list_apps, list_users}) {
    sub->add_option("--after", after, "start after this key (paging)");
    sub->add_option("--limit", limit, "at most this many (default 1000)");
  }
  list_apps->callback([&] {
    action = [&](parley::admin_client& c) {
      auto r = c.list(parley::admin_list_what::apps, {}, after, limit);
      if (!r)
        return fail(r.error());
      std::cout << *r << '\n';
      return 0;
    };
  });
  list_users->callback([&] {
    action = [&](parley::admin_client& c) {
      auto r = c.list(parley::admin_list_what::users, app_id, after, limit);
      if (!r)
        return fail(r.error());
      std::cout << *r << '\n';
      return 0;
    };
  });

  // -- user commands
  // ------------------------------------------------------------
  std::function<int()> user_action;
  std::string peer;
  std::vector<std::string> words;
  size_t count = 20;
  auto add_user_opts = [&](CLI::App* sub) {
    sub->add_option("--app", g.app, "app id (env PARLEY_APP)");
    sub->add_option("--token", g.token, "access token (env PARLEY_TOKEN)");
    sub->add_option("--db", g.database,
                    "local database directory (history needs one)");
  };
  auto* send_cmd =
    app.add_subcommand("send", "send one message, wait for SENT");
  add_user_opts(send_cmd);
  send_cmd->add_option("PEER", peer, "receiver address")->required();
  send_cmd->add_option("TEXT", words, "the message")->required();
  send_cmd->callback([&] {
    user_action = [&] {
      block_stop_signals();
      auto out = std::make_shared<printer>(false);
      auto c = go_online(g, out);
      if (!c)
        return 1;
      std::string text;
      for (auto& w : words)
        text += (text.empty() ? "" : " ") + w;
      auto id = c->send(peer, text);
      if (!id)
        return fail(id.error());
      auto st = out->wait_sent(*id, std::chrono::seconds(g.timeout_s));
      if (parley::is_failure(st) || st == parley::message_status::outbox) {
        std::cerr << "parley: message " << *id << ": " << parley::to_string(st)
                  << " " << out->failure(*id) << '\n';
        return 1;
      }
      out->print("sent " + std::to_string(*id) + '\n');
      return 0;
    };
  });
  auto* listen_cmd = app.add_subcommand(
    "listen", "print messages, status changes and presence until Ctrl-C");
  add_user_opts(listen_cmd);
  std::vector<std::string> watch;
  listen_cmd
    ->add_option("--watch", watch,
                 "users whose online/offline presence to print")
    ->delimiter(',');
  listen_cmd->callback([&] {
    user_action = [&] {
      auto stop = block_stop_signals();
      auto out = std::make_shared<printer>(true);
      auto c = go_online(g, out);
      if (!c)
        return 1;
      if (!watch.empty())
        if (auto s = c->subscribe_presence(watch); !s)
          return fail(s);
      int sig = 0;
      sigwait(&stop, &sig);
      return 0;
    };
  });
  auto* chat_cmd = app.add_subcommand(
    "chat", "talk with PEER: lines from stdin are sent, messages printed");
  add_user_opts(chat_cmd);
  chat_cmd->add_option("PEER", peer, "the other user")->required();
  chat_cmd->callback([&] {
    user_action = [&] {
      block_stop_signals();
      auto out = std::make_shared<printer>(true);
      auto c = go_online(g, out);
      if (!c)
        return 1;
      c->subscribe_presence({peer}); // prints when PEER comes and goes
      std::string line;
      while (std::getline(std::cin, line)) {
        if (line.empty())
          continue;
        if (auto id = c->send(peer, line); !id)
          fail(id.error());
      }
      return 0;
    };
  });
  // -- groups (a user's commands: the token decides who acts)
  uint32_t gid = 0;
  std::string group_name;
  std::vector<std::string> group_members;
  auto print_group = [](printer& out, const parley::group_info& gi) {
    std::ostringstream os;
    os << "group " << gi.id << " '" << gi.name << "' owner " << gi.owner
       << ", members:";
    for (auto& m : gi.members)
      os << ' ' << m.address
         << ((m.flags & parley::member_flags::admin) ? "(admin)" : "");
    os << '\n';
    out.print(os.str());
  };
  auto* group_cmd =
    app.add_subcommand("group", "create, change, list and send to groups")
      ->require_subcommand(1);
  auto group_sub = [&](const char* name, const char* what,
                       std::function<int(parley::client&, printer&)> run) {
    auto* sub = group_cmd->add_subcommand(name, what);
    add_user_opts(sub);
    sub->callback([&, run] {
      user_action = [&, run] {
        block_stop_signals();
        auto out = std::make_shared<printer>(false);
        auto c = go_online(g, out);
        if (!c)
          return 1;
        return run(*c, *out);
      };
    });
    return sub;
  };
  auto to_members = [&] {
    std::vector<parley::group_member> v;
    for (auto& a : group_members)
      v.push_back(parley::group_member{a, 0});
    return v;
  };
  auto* gcreate = group_sub("create", "create a group you own, with members",
                            [&](parley::client& c, printer& out) {
                              auto r = c.create_group(group_name, to_members());
                              if (!r)
                                return fail(r.error());
                              print_group(out, *r);
                              return 0;
                            });
  gcreate->add_option("NAME", group_name, "group name")->required();
  gcreate->add_option("MEMBERS", group_members, "member addresses");
  auto* gadd = group_sub("add", "add members (admins only)",
                         [&](parley::client& c, printer&) {
                           auto s = c.add_group_members(gid, to_members());
                           return s ? 0 : fail(s);
                         });
  gadd->add_option("GROUP", gid, "group id")->required();
  gadd->add_option("MEMBERS", group_members, "member addresses")->required();
  auto* gremove = group_sub(
    "remove", "remove members (admins only)", [&](parley::client& c, printer&) {
      auto s = c.remove_group_members(gid, group_members);
      return s ? 0 : fail(s);
    });
  gremove->add_option("GROUP", gid, "group id")->required();
  gremove->add_option("MEMBERS", group_members, "member addresses")->required();
  auto* gleave =
    group_sub("leave", "leave a group", [&](parley::client& c, printer&) {
      auto s = c.leave_group(gid);
      return s ? 0 : fail(s);
    });
  gleave->add_option("GROUP", gid, "group id")->required();
  auto* gdelete = group_sub("delete", "delete a group (its owner only)",
                            [&](parley::client& c, printer&) {
                              auto s = c.delete_group(gid);
                              return s ? 0 : fail(s);
                            });
  gdelete->add_option("GROUP", gid, "group id")->required();
  auto* gshow = group_sub("show", "a group and its members",
                          [&](parley::client& c, printer& out) {
                            auto r = c.group(gid);
                            if (!r)
                              return fail(r.error());
                            print_group(out, *r);
                            return 0;
                          });
  gshow->add_option("GROUP", gid, "group id")->required();
  group_sub("list", "the groups you belong to",
            [&](parley::client& c, printer& out) {
              auto r = c.groups();
              if (!r)
                return fail(r.error());
              std::string text;
              for (auto& gi : *r)
                text += std::to_string(gi.id) + '\t' + gi.name + '\n';
              out.print(text);
              return 0;
            });
  auto* gsend = group_sub(
    "send", "send one message to a group, wait for SENT",
    [&](parley::client& c, printer& out) {
      std::string text;
      for (auto& w : words)
        text += (text.empty() ? "" : " ") + w;
      auto id = c.send_to_group(gid, text);
      if (!id)
        return fail(id.error());
      auto st = out.wait_sent(*id, std::chrono::seconds(g.timeout_s));
      if (parley::is_failure(st) || st == parley::message_status::outbox) {
        std::cerr << "parley: message " << *id << ": " << parley::to_string(st)
                  << " " << out.failure(*id) << '\n';
        return 1;
      }
      out.print("sent " + std::to_string(*id) + '\n');
      return 0;
    });
  gsend->add_option("GROUP", gid, "group id")->required();
  gsend->add_option("TEXT", words, "the message")->required();
  auto* history_cmd = app.add_subcommand(
    "history", "print the conversation with PEER from the local database");
  add_user_opts(history_cmd);
  history_cmd->add_option("PEER", peer, "the other user")->required();
  history_cmd->add_option("--count", count, "how many messages")
    ->capture_default_str();
  history_cmd->callback([&] {
    user_action = [&] {
      if (g.database.empty()) {
        std::cerr << "parley: history reads the local database: pass --db "
                     "DIR (the one 'listen' or 'chat' used)\n";
        return 1;
      }
      auto o = client_opts(g);
      if (!o)
        return fail(o.error());
      auto c = parley::client::create(*o);
      if (!c)
        return fail(c.error());
      // The newest `count`, printed oldest first like a chat window.
      auto page = (*c)->read_session_for(peer)->read(count);
      if (!page)
        return fail(page.error());
      std::reverse(page->begin(), page->end());
      for (auto& m : *page)
        std::cout << (m.outgoing ? "-> " + m.peer : m.sender) << ": "
                  << m.payload << "  [" << parley::to_string(m.status) << "]\n";
      return 0;
    };
  });

  CLI11_PARSE(app, argc, argv);
  if (user_action)
    return user_action();
  auto opts = resolve(g);
  if (!opts)
    return fail(opts.error());
  auto client = parley::admin_client::connect(*opts);
  if (!client)
    return fail(client.error());
  return action(**client);
}
