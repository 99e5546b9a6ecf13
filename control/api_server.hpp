// The control API's HTTP/1.1 server (docs/api.md): single-threaded and non-blocking,
// driven from the control thread by poll(timeout_ms). No threads of its own.
//
//   ApiServer api("127.0.0.1:9080");            // or "[::1]:9080", "unix:/run/nplb/api.sock"
//   api.route("GET", "/v1/status", [&](const HttpRequest& r) { return HttpResponse{...}; });
//   for (;;) api.poll(100);                      // accept, read, dispatch, write
//
// One request per connection (every response carries "Connection: close"). Each
// connection has its own buffers, so a slow client never holds up another. Requests are
// bounded (headers 16 KiB -> 431, body 1 MiB -> 413) and must arrive within
// request_timeout_ms (-> 408). Errors are JSON: {"error": "..."}; an unknown path gets
// 404, a known path with another method 405 (with Allow), a malformed request 400.
// A GET route also answers HEAD.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace nplb {

struct HttpRequest {
  std::string method;                          // "GET", "POST", ...
  std::string path;                            // percent-decoded, without the query
  std::string query;                           // raw, without '?'
  std::map<std::string, std::string> params;   // decoded query parameters (last one wins)
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

// {"error": message} with the given status: what handlers return on failure.
HttpResponse json_error(int status, std::string_view message);

// "Not Found" for 404, ... ("Unknown" for codes it does not know).
const char* http_reason(int status);

class ApiServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;

  struct Limits {
    std::size_t max_header_bytes = 16 * 1024;   // request line + headers
    std::size_t max_body_bytes = 1024 * 1024;
    std::size_t max_connections = 256;          // beyond: 503 and close (lingering ones count half)
    int request_timeout_ms = 10000;             // from accept to a complete request
    int write_timeout_ms = 10000;               // from a response to its last byte
  };

  // Binds and listens on a loopback address or a Unix socket. Throws std::runtime_error
  // naming the spec and the cause ("... address already in use", "... not a loopback
  // address", ...). A stale Unix socket file (nobody accepting on it) is removed
  // first; a live one is an error. The socket file gets mode 0600 and is removed again
  // by the destructor (unless another file has replaced it meanwhile).
  explicit ApiServer(const std::string& listen);
  ApiServer(const std::string& listen, Limits limits);
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Exact path match ("/v1/services"); a trailing '/' in requests is ignored.
  // A later route for the same method and path replaces the earlier one.
  void route(std::string method, std::string path, Handler handler);

  // Waits at most timeout_ms (0: don't wait; negative: until something happens) for
  // activity, then accepts new connections, reads what arrived, dispatches complete
  // requests and writes what the sockets take. Handlers run inside poll().
  void poll(int timeout_ms);

  int fd() const { return listen_fd_; }            // the listening socket
  std::string address() const { return address_; } // "127.0.0.1:40123", "[::1]:9080", "unix:/p"
  std::size_t connections() const { return conns_.size(); }

 private:
  struct Conn;
  void accept_all();
  void on_readable(Conn& c);
  void on_writable(Conn& c);
  void process(Conn& c);
  void respond(Conn& c, const HttpResponse& r, bool head_only = false);
  void close_conn(Conn& c);
  HttpResponse dispatch(HttpRequest& req, bool& head_only) const;

  Limits limits_;
  int listen_fd_ = -1;
  std::string address_;
  std::string unix_path_;  // empty for TCP
  unsigned long unix_dev_ = 0, unix_ino_ = 0;
  std::map<std::string, std::map<std::string, Handler>> routes_;  // path -> method -> handler
  std::vector<std::unique_ptr<Conn>> conns_;
};

}  // namespace nplb
