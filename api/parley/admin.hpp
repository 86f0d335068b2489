#pragma once

// The admin client: the admin frames over TLS, authenticated with the admin
// key parleyd writes into its data directory (admin.key, mode 0600). What
// `parley admin` uses; backends can use it to create users and issue tokens.
//
//   parley::admin_options o;
//   o.admin_key = "...";  o.ca_file = "parley-data/cert.pem";
//   auto adm = parley::admin_client::connect(o);
//   auto tok = (*adm)->user_add("demo", "alice");   // tok->token
//
// Threading: one thread at a time per admin_client; calls block until the
// server answered or the timeout passed.

#include <parley/server.hpp>
#include <parley/status.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace parley {

/// Where and how to reach a server's admin interface.
struct admin_options {
  std::string host = "127.0.0.1";
  uint16_t port = 5290;
  /// The admin key (parleyd's <data_dir>/admin.key).
  std::string admin_key;
  /// Trust: the server's certificate (or its CA) as a PEM file, or the
  /// SHA-256 fingerprint of its certificate. One of the two is needed unless
  /// the certificate chains to the system's CAs.
  std::string ca_file;
  std::string fingerprint;
  /// How long to wait for the connection and for each answer.
  std::chrono::milliseconds timeout{10000};
};

/// What admin list returns: a JSON array as text.
enum class admin_list_what { apps, users };

class admin_client {
 public:
  /// Connects, checks the certificate and logs in with the admin key.
  /// Errors: unavailable (no server there), unauthenticated (certificate not
  /// trusted, wrong admin key), timeout.
  static result<std::unique_ptr<admin_client>>
  connect(const admin_options& opts);

  ~admin_client();
  admin_client(const admin_client&) = delete;
  admin_client& operator=(const admin_client&) = delete;

  /// Creates an app. Errors: already_exists, invalid_argument.
  status app_add(const std::string& app_id, const std::string& name = {});

  /// Deletes an app with its users, tokens and logs.
  status app_delete(const std::string& app_id);

  /// Creates a user (if missing) and issues an access token.
  result<access_token> user_add(const std::string& app_id,
                                const std::string& address,
                                const std::string& name = {},
                                uint32_t token_ttl_s = 0);

  /// Creates many users (those missing) and issues a token for each, in the
  /// order given: a thousand users at a time in one transaction on the
  /// server, so provisioning 10,000 costs ten durable commits instead of
  /// 10,000. The whole list is checked before anything is sent (a
  /// malformed or repeated address anywhere creates nothing); each
  /// thousand is then all or nothing. An error after the first thousand
  /// (the connection lost, say) says how many were created and returns no
  /// tokens: call users_add again with the same list, which creates only
  /// those missing and issues a token for each. Errors: not_found (no such
  /// app), invalid_argument (a malformed or repeated address), as user_add.
  result<std::vector<access_token>>
  users_add(const std::string& app_id,
            const std::vector<std::string>& addresses,
            uint32_t token_ttl_s = 0);

  /// Issues another token for an existing user.
  result<access_token> token_add(const std::string& app_id,
                                 const std::string& address,
                                 uint32_t token_ttl_s = 0);

  /// Revokes one token, or all of the user's when `token` is empty.
  status token_revoke(const std::string& app_id, const std::string& address,
                      const std::string& token = {});

  /// Disables (or enables) a user; disabling ends its sessions.
  status user_disable(const std::string& app_id, const std::string& address,
                      bool disabled = true);

  /// Deletes a user with its tokens and log.
  status user_delete(const std::string& app_id, const std::string& address);

  /// Lists apps, or the users of `app_id`, as a JSON array, after `after`.
  result<std::string> list(admin_list_what what, const std::string& app_id = {},
                           const std::string& after = {}, uint32_t limit = 0);

  struct impl;

 private:
  explicit admin_client(std::unique_ptr<impl> p);
  std::unique_ptr<impl> impl_;
};

} // namespace parley
