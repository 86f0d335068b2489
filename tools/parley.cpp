// parley: the command-line client and admin tool.
//
//   parley admin app add demo
//   parley admin user add demo alice           # prints alice's access token
//   parley admin token revoke demo alice
//   parley admin list users demo
//
// Connection settings come from flags, else the environment (PARLEY_SERVER,
// PARLEY_ADMIN_KEY, PARLEY_CA, PARLEY_FINGERPRINT), else the local data
// directory of a parleyd started by scripts/run (./parley-data: admin.key
// and cert.pem).

#include <parley/admin.hpp>

#include <CLI/CLI.hpp>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>

namespace {

struct globals {
  std::string server;
  std::string data_dir = "parley-data";
  std::string admin_key;
  std::string ca_file;
  std::string fingerprint;
  unsigned timeout_s = 10;
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
  auto* user_add = users->add_subcommand(
    "add", "create a user (if new) and print an access token");
  user_add->add_option("APP", app_id, "app id")->required();
  user_add->add_option("ADDRESS", address, "user address")->required();
  user_add->add_option("--name", name, "display name");
  user_add->add_option("--ttl", ttl, "token lifetime in seconds (0: server's)");
  user_add->callback([&] {
    action = [&](parley::admin_client& c) {
      return print_token(c.user_add(app_id, address, name, ttl));
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

  CLI11_PARSE(app, argc, argv);
  auto opts = resolve(g);
  if (!opts)
    return fail(opts.error());
  auto client = parley::admin_client::connect(*opts);
  if (!client)
    return fail(client.error());
  return action(**client);
}
