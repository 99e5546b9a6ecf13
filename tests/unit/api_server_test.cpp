// ApiServer against real sockets: routes, errors, limits, listen specs, concurrency.
// The server runs its poll loop on a thread of the test; clients are blocking sockets.
#include "control/api_server.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

using nplb::ApiServer;
using nplb::HttpRequest;
using nplb::HttpResponse;
using Clock = std::chrono::steady_clock;

namespace {

int connect_to(const std::string& address) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family;
  if (address.rfind("unix:", 0) == 0) {
    auto* sun = reinterpret_cast<sockaddr_un*>(&ss);
    sun->sun_family = AF_UNIX;
    std::string path = address.substr(5);
    std::memcpy(sun->sun_path, path.data(), path.size());
    len = sizeof *sun;
    family = AF_UNIX;
  } else if (address[0] == '[') {
    auto close = address.find(']');
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
    s6->sin6_family = AF_INET6;
    inet_pton(AF_INET6, address.substr(1, close - 1).c_str(), &s6->sin6_addr);
    s6->sin6_port = htons(static_cast<uint16_t>(std::stoi(address.substr(close + 2))));
    len = sizeof *s6;
    family = AF_INET6;
  } else {
    auto colon = address.rfind(':');
    auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
    s4->sin_family = AF_INET;
    inet_pton(AF_INET, address.substr(0, colon).c_str(), &s4->sin_addr);
    s4->sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
    len = sizeof *s4;
    family = AF_INET;
  }
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return fd;
}

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

std::string read_all(int fd) {
  std::string out;
  char buf[8192];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

struct Answer {
  int status = 0;
  std::string head;
  std::string body;
  std::string raw;
  bool has_header(const std::string& line) const { return head.find(line) != std::string::npos; }
};

Answer parse_answer(const std::string& raw) {
  Answer a;
  a.raw = raw;
  std::string rest = raw;
  // Skip interim 100 Continue.
  while (rest.rfind("HTTP/1.1 100", 0) == 0) rest = rest.substr(rest.find("\r\n\r\n") + 4);
  auto end = rest.find("\r\n\r\n");
  if (rest.size() < 12 || end == std::string::npos) return a;
  a.status = std::stoi(rest.substr(9, 3));
  a.head = rest.substr(0, end + 2);
  a.body = rest.substr(end + 4);
  return a;
}

// One raw exchange: send, read until the server closes.
Answer roundtrip(const std::string& address, const std::string& request) {
  int fd = connect_to(address);
  if (fd < 0) return {};
  send_all(fd, request);
  Answer a = parse_answer(read_all(fd));
  close(fd);
  return a;
}

Answer get(const std::string& address, const std::string& target) {
  return roundtrip(address, "GET " + target + " HTTP/1.1\r\nHost: t\r\n\r\n");
}

// Runs ApiServer::poll on a thread until destroyed.
class Loop {
 public:
  explicit Loop(ApiServer& s) : t_([this, &s] {
    while (!stop_) s.poll(10);
  }) {}
  ~Loop() {
    stop_ = true;
    t_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread t_;
};

void add_routes(ApiServer& s) {
  s.route("GET", "/v1/status", [](const HttpRequest&) {
    return HttpResponse{200, "application/json", "{\"generation\": 3}\n"};
  });
  s.route("POST", "/v1/reload", [](const HttpRequest& r) {
    return HttpResponse{200, "application/json", "{\"ok\": true, \"got\": " + std::to_string(r.body.size()) + "}"};
  });
  s.route("POST", "/echo", [](const HttpRequest& r) { return HttpResponse{200, "text/plain", r.body}; });
  s.route("GET", "/params", [](const HttpRequest& r) {
    std::string out = "path=" + r.path + ";query=" + r.query;
    for (auto& [k, v] : r.params) out += ";" + k + "=" + v;
    return HttpResponse{200, "text/plain", out};
  });
  s.route("GET", "/throw", [](const HttpRequest&) -> HttpResponse { throw std::runtime_error("boom"); });
}

std::string temp_path(const std::string& name) {
  return "/tmp/nplb_api_test_" + std::to_string(getpid()) + "_" + name;
}

}  // namespace

TEST(ApiServer, EphemeralPortAndRoutes) {
  ApiServer s("127.0.0.1:0");
  add_routes(s);
  ASSERT_GE(s.fd(), 0);
  std::string addr = s.address();
  ASSERT_EQ(addr.rfind("127.0.0.1:", 0), 0u) << addr;
  EXPECT_NE(addr, "127.0.0.1:0");
  Loop loop(s);

  Answer a = get(addr, "/v1/status");
  EXPECT_EQ(a.status, 200) << a.raw;
  EXPECT_EQ(a.body, "{\"generation\": 3}\n");
  EXPECT_TRUE(a.has_header("Content-Type: application/json\r\n")) << a.head;
  EXPECT_TRUE(a.has_header("Content-Length: 18\r\n")) << a.head;
  EXPECT_TRUE(a.has_header("Connection: close\r\n")) << a.head;

  // A trailing slash is the same path; HTTP/1.0 works too.
  EXPECT_EQ(get(addr, "/v1/status/").status, 200);
  EXPECT_EQ(roundtrip(addr, "GET /v1/status HTTP/1.0\r\n\r\n").status, 200);
  // Bare LF line ends are tolerated.
  EXPECT_EQ(roundtrip(addr, "GET /v1/status HTTP/1.1\nHost: t\n\n").status, 200);

  // HEAD on a GET route: the headers without the body.
  Answer h = roundtrip(addr, "HEAD /v1/status HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(h.status, 200);
  EXPECT_TRUE(h.has_header("Content-Length: 18\r\n"));
  EXPECT_EQ(h.body, "");
}

TEST(ApiServer, ErrorsAreJson) {
  ApiServer s("127.0.0.1:0");
  add_routes(s);
  Loop loop(s);
  std::string addr = s.address();

  Answer nf = get(addr, "/v1/nothing");
  EXPECT_EQ(nf.status, 404);
  EXPECT_TRUE(nf.has_header("Content-Type: application/json"));
  EXPECT_EQ(nf.body, "{\"error\": \"no such path: /v1/nothing\"}\n");

  Answer na = roundtrip(addr, "DELETE /v1/status HTTP/1.1\r\nHost: t\r\n\r\n");
  EXPECT_EQ(na.status, 405);
  EXPECT_TRUE(na.has_header("Allow: GET, HEAD\r\n")) << na.head;
  EXPECT_NE(na.body.find("\"error\""), std::string::npos);
  Answer na2 = get(addr, "/v1/reload");
  EXPECT_EQ(na2.status, 405);
  EXPECT_TRUE(na2.has_header("Allow: POST\r\n")) << na2.head;

  Answer boom = get(addr, "/throw");
  EXPECT_EQ(boom.status, 500);
  EXPECT_EQ(boom.body, "{\"error\": \"internal error: boom\"}\n");
}

TEST(ApiServer, MalformedRequests) {
  ApiServer s("127.0.0.1:0");
  add_routes(s);
  Loop loop(s);
  std::string addr = s.address();
  const std::vector<std::string> bad = {
      "GARBAGE\r\n\r\n",
      "GET\r\n\r\n",
      "GET /v1/status\r\n\r\n",
      "GET  /v1/status HTTP/1.1\r\n\r\n",
      "GET /v1/status HTTP/1.1 x\r\n\r\n",
      "GET /v1/status HTTX/1.1\r\n\r\n",
      "GET v1/status HTTP/1.1\r\n\r\n",
      "GET http://x/v1/status HTTP/1.1\r\n\r\n",
      "G(T /v1/status HTTP/1.1\r\n\r\n",
      "GET /v1/status HTTP/1.1\r\nno colon here\r\n\r\n",
      "GET /v1/status HTTP/1.1\r\n: empty name\r\n\r\n",
      "GET /v1/status HTTP/1.1\r\nBad Name: x\r\n\r\n",
      "GET /v1/status HTTP/1.1\r\nHost: t\r\n folded\r\n\r\n",
      "GET /v1/%zz HTTP/1.1\r\n\r\n",
      "GET /v1/%00 HTTP/1.1\r\n\r\n",
      "GET /params?a=%4 HTTP/1.1\r\n\r\n",
      "POST /echo HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
      "POST /echo HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
      std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11),  // a TLS hello
  };
  for (const auto& req : bad) {
    Answer a = roundtrip(addr, req);
    EXPECT_EQ(a.status, 400) << "request: " << req << "\nanswer: " << a.raw;
    EXPECT_NE(a.body.find("{\"error\": "), std::string::npos) << req;
  }
  EXPECT_EQ(roundtrip(addr, "GET /v1/status HTTP/2.0\r\n\r\n").status, 505);
  EXPECT_EQ(roundtrip(addr, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").status, 411);
  // Incomplete, then the client ends its side: 400, not silence.
  int fd = connect_to(addr);
  ASSERT_GE(fd, 0);
  send_all(fd, "GET /v1/sta");
  shutdown(fd, SHUT_WR);
  EXPECT_EQ(parse_answer(read_all(fd)).status, 400);
  close(fd);
}

TEST(ApiServer, QueryParameters) {
  ApiServer s("127.0.0.1:0");
  add_routes(s);
  Loop loop(s);
  Answer a = get(s.address(), "/params?service=default/web&port=http&x=a+b%2Fc&flag&=&y=1&y=2");
  EXPECT_EQ(a.status, 200);
  EXPECT_EQ(a.body,
            "path=/params;query=service=default/web&port=http&x=a+b%2Fc&flag&=&y=1&y=2"
            ";=;flag=;port=http;service=default/web;x=a b/c;y=2");
  Answer b = get(s.address(), "/params?service=default%2Fweb");
  EXPECT_NE(b.body.find(";service=default/web"), std::string::npos) << b.body;
  // A percent-encoded path matches its route.
  EXPECT_EQ(get(s.address(), "/v1/st%61tus").status, 200);
}

TEST(ApiServer, BodiesAndLimits) {
  ApiServer s("127.0.0.1:0");
  add_routes(s);
  Loop loop(s);
  std::string addr = s.address();

  Answer e = roundtrip(addr, "POST /echo HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_EQ(e.status, 200);
  EXPECT_EQ(e.body, "hello");
  EXPECT_TRUE(e.has_header("Content-Type: text/plain\r\n"));
  EXPECT_EQ(roundtrip(addr, "POST /v1/reload HTTP/1.1\r\nHost: t\r\n\r\n").body, "{\"ok\": true, \"got\": 0}");

  // A body of exactly the limit is fine; one byte more is 413.
  std::string mib(1024 * 1024, 'x');
  Answer big = roundtrip(addr, "POST /echo HTTP/1.1\r\nContent-Length: " + std::to_string(mib.size()) + "\r\n\r\n" + mib);
  EXPECT_EQ(big.status, 200);
  EXPECT_EQ(big.body.size(), mib.size());
  // Announced too large: refused at once, and the client still reads the 413 while
  // it sends its body (no reset).
  Answer too_big = roundtrip(addr, "POST /echo HTTP/1.1\r\nContent-Length: " + std::to_string(mib.size() + 1) +
                                      "\r\n\r\n" + mib + "x");
  EXPECT_EQ(too_big.status, 413) << too_big.raw.substr(0, 200);
  EXPECT_EQ(roundtrip(addr, "POST /echo HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n").status, 413);

  // Headers beyond 16 KiB: 431; a request line alone that long: 414.
  std::string hdrs;
  for (int i = 0; i < 400; ++i) hdrs += "X-Filler-" + std::to_string(i) + ": 0123456789012345678901234567890123456789\r\n";
  EXPECT_EQ(roundtrip(addr, "GET /v1/status HTTP/1.1\r\n" + hdrs + "\r\n").status, 431);
  EXPECT_EQ(roundtrip(addr, "GET /" + std::string(20000, 'a') + " HTTP/1.1\r\n\r\n").status, 414);

  // Expect: 100-continue gets its interim answer before the body is sent.
  int fd = connect_to(addr);
  ASSERT_GE(fd, 0);
  send_all(fd, "POST /echo HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
  char buf[64] = {};
  ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<std::size_t>(n)), "HTTP/1.1 100 Continue\r\n\r\n");
  send_all(fd, "abc");
  Answer c = parse_answer(read_all(fd));
  EXPECT_EQ(c.status, 200);
  EXPECT_EQ(c.body, "abc");
  close(fd);
}

TEST(ApiServer, ListenSpecErrors) {
  auto message = [](const std::string& spec) -> std::string {
    try {
      ApiServer s(spec);
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "(no error)";
  };
  EXPECT_NE(message("10.1.2.3:9080").find("not a loopback address"), std::string::npos);
  EXPECT_NE(message("[2001:db8::1]:9080").find("not a loopback address"), std::string::npos);
  EXPECT_NE(message("127.0.0.1").find("expected ADDRESS:PORT"), std::string::npos);
  EXPECT_NE(message("127.0.0.1:99999").find("bad port"), std::string::npos);
  EXPECT_NE(message("127.0.0.1:80x").find("bad port"), std::string::npos);
  EXPECT_NE(message("::1:9080").find("needs brackets"), std::string::npos);
  EXPECT_NE(message("[::1]9080").find("expected [IPv6]:PORT"), std::string::npos);
  EXPECT_NE(message("example.com:80").find("not an IP address"), std::string::npos);
  EXPECT_NE(message("unix:").find("empty socket path"), std::string::npos);
  EXPECT_NE(message("unix:/" + std::string(200, 'a')).find("too long"), std::string::npos);
  EXPECT_NE(message("unix:/nonexistent-dir-nplb/api.sock").find("does /nonexistent-dir-nplb exist?"),
            std::string::npos)
      << message("unix:/nonexistent-dir-nplb/api.sock");
  // Every message names the spec.
  EXPECT_EQ(message("10.1.2.3:9080").rfind("api.listen \"10.1.2.3:9080\": ", 0), 0u);

  ApiServer first("127.0.0.1:0");
  std::string m = message(first.address());
  EXPECT_NE(m.find("address already in use"), std::string::npos) << m;
}

TEST(ApiServer, Ipv6Loopback) {
  std::unique_ptr<ApiServer> s;
  try {
    s = std::make_unique<ApiServer>("[::1]:0");
  } catch (const std::runtime_error& e) {
    GTEST_SKIP() << "no IPv6 loopback here: " << e.what();
  }
  add_routes(*s);
  ASSERT_EQ(s->address().rfind("[::1]:", 0), 0u) << s->address();
  Loop loop(*s);
  EXPECT_EQ(get(s->address(), "/v1/status").status, 200);
}

TEST(ApiServer, UnixSocket) {
  std::string path = temp_path("api.sock");
  unlink(path.c_str());
  // A stale socket file (bound, nobody listening) is replaced.
  {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::memcpy(sun.sun_path, path.data(), path.size());
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&sun), sizeof sun), 0);
    close(fd);
  }
  {
    ApiServer s("unix:" + path);
    add_routes(s);
    EXPECT_EQ(s.address(), "unix:" + path);
    struct stat st {};
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0600u);

    // A live socket is not taken over.
    try {
      ApiServer second("unix:" + path);
      ADD_FAILURE() << "a second server took over a live socket";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("address already in use"), std::string::npos) << e.what();
    }

    Loop loop(s);
    Answer a = get(s.address(), "/v1/status");
    EXPECT_EQ(a.status, 200);
    EXPECT_EQ(a.body, "{\"generation\": 3}\n");
  }
  // Removed on destruction.
  struct stat st {};
  EXPECT_NE(stat(path.c_str(), &st), 0);

  // A regular file in the way is an error, and is left alone.
  { std::ofstream(path) << "data"; }
  try {
    ApiServer s("unix:" + path);
    ADD_FAILURE() << "bound over a regular file";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("exists and is not a socket"), std::string::npos) << e.what();
  }
  EXPECT_EQ(stat(path.c_str(), &st), 0);
  unlink(path.c_str());
}

TEST(ApiServer, ConcurrentClients) {
  ApiServer s("127.0.0.1:0");
  add_routes(s);
  Loop loop(s);
  std::string addr = s.address();
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  constexpr int kThreads = 32, kEach = 25;
  for (int t = 0; t < kThreads; ++t)
    clients.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) {
        Answer a = get(addr, "/v1/status");
        if (a.status == 200 && a.body == "{\"generation\": 3}\n") ++ok;
      }
    });
  for (auto& c : clients) c.join();
  EXPECT_EQ(ok.load(), kThreads * kEach);
}

TEST(ApiServer, SlowClientDoesNotBlockOthers) {
  ApiServer s("127.0.0.1:0");
  add_routes(s);
  Loop loop(s);
  std::string addr = s.address();

  // Several slow clients: half a request line, half the headers, half a body.
  std::vector<int> slow;
  for (const char* part : {"GET /v1/sta", "GET /v1/status HTTP/1.1\r\nHost:", "POST /echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"}) {
    int fd = connect_to(addr);
    ASSERT_GE(fd, 0);
    send_all(fd, part);
    slow.push_back(fd);
  }
  // A client that never reads its (large) answer.
  int nonreader = connect_to(addr);
  ASSERT_GE(nonreader, 0);
  std::string big(900 * 1024, 'y');
  send_all(nonreader, "POST /echo HTTP/1.1\r\nContent-Length: " + std::to_string(big.size()) + "\r\n\r\n" + big);

  auto t0 = Clock::now();
  for (int i = 0; i < 20; ++i) EXPECT_EQ(get(addr, "/v1/status").status, 200);
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(2));

  // The slow ones finish later and are answered too.
  send_all(slow[0], "tus HTTP/1.1\r\n\r\n");
  send_all(slow[1], " t\r\n\r\n");
  send_all(slow[2], "defghij");
  EXPECT_EQ(parse_answer(read_all(slow[0])).status, 200);
  EXPECT_EQ(parse_answer(read_all(slow[1])).status, 200);
  Answer e = parse_answer(read_all(slow[2]));
  EXPECT_EQ(e.status, 200);
  EXPECT_EQ(e.body, "abcdefghij");
  for (int fd : slow) close(fd);
  Answer nr = parse_answer(read_all(nonreader));
  EXPECT_EQ(nr.body.size(), big.size());
  close(nonreader);
}

TEST(ApiServer, TimeoutsAndConnectionLimit) {
  ApiServer::Limits limits;
  limits.request_timeout_ms = 200;
  limits.max_connections = 2;
  ApiServer s("127.0.0.1:0", limits);
  add_routes(s);
  Loop loop(s);
  std::string addr = s.address();

  int a = connect_to(addr), b = connect_to(addr);
  ASSERT_GE(a, 0);
  ASSERT_GE(b, 0);
  send_all(a, "GET /v1/sta");
  send_all(b, "GET /v1/sta");
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  // Both slots taken: the next one is told so.
  EXPECT_EQ(get(addr, "/v1/status").status, 503);
  // A stalled request times out with 408.
  auto t0 = Clock::now();
  EXPECT_EQ(parse_answer(read_all(a)).status, 408);
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(2));
  EXPECT_EQ(parse_answer(read_all(b)).status, 408);
  close(a);
  close(b);
  // Slots free again.
  EXPECT_EQ(get(addr, "/v1/status").status, 200);
}

TEST(ApiServer, PollNeverBlocksLongerThanAsked) {
  ApiServer s("127.0.0.1:0");
  add_routes(s);
  int idle = connect_to(s.address());  // a connection that says nothing
  ASSERT_GE(idle, 0);
  for (int i = 0; i < 5; ++i) {
    auto t0 = Clock::now();
    s.poll(30);
    auto took = Clock::now() - t0;
    EXPECT_LT(took, std::chrono::milliseconds(300));
  }
  auto t0 = Clock::now();
  s.poll(0);
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(100));
  EXPECT_EQ(s.connections(), 1u);
  close(idle);
  s.poll(10);
  s.poll(10);
  EXPECT_EQ(s.connections(), 0u);
}

TEST(ApiServer, ClientsThatVanish) {
  ApiServer s("127.0.0.1:0");
  add_routes(s);
  Loop loop(s);
  std::string addr = s.address();
  for (int i = 0; i < 20; ++i) {
    int fd = connect_to(addr);
    ASSERT_GE(fd, 0);
    if (i % 2) send_all(fd, "GET /v1/status HTTP/1.1\r\n\r\n");
    linger l{1, 0};  // close with a reset
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
  }
  EXPECT_EQ(get(addr, "/v1/status").status, 200);
}

TEST(ApiServer, JsonErrorHelper) {
  HttpResponse r = nplb::json_error(404, "no \"such\" service");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(r.body, "{\"error\": \"no \\\"such\\\" service\"}\n");
  EXPECT_STREQ(nplb::http_reason(431), "Request Header Fields Too Large");
}
