// A small strict JSON parser (RFC 8259) for nplbctl: reads the control API's answers.
//
//   JsonValue v = JsonValue::parse(text);          // throws JsonParseError
//   for (auto& s : v["services"].as_array()) std::cout << s["name"].as_string();
//
// Strict: one value, surrounded only by whitespace; no comments, no trailing commas,
// no leading zeros, no NaN; strings are valid UTF-8 without raw control characters;
// \u escapes must pair surrogates; duplicate keys and nesting deeper than max_depth are
// errors. Objects keep their keys in document order, numbers keep their text (so
// dump() reproduces 64-bit counters exactly).
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nplb {

class JsonParseError : public std::runtime_error {
 public:
  JsonParseError(const std::string& what, std::size_t offset, std::size_t line, std::size_t column)
      : std::runtime_error(what), offset_(offset), line_(line), column_(column) {}
  std::size_t offset() const { return offset_; }  // byte offset, from 0
  std::size_t line() const { return line_; }      // from 1
  std::size_t column() const { return column_; }  // byte column, from 1

 private:
  std::size_t offset_, line_, column_;
};

// Asking a value for the wrong type (as_string() of a number, ...).
class JsonTypeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class JsonValue {
 public:
  enum class Type { Null, Bool, Number, String, Array, Object };
  using Array = std::vector<JsonValue>;
  using Member = std::pair<std::string, JsonValue>;
  using Object = std::vector<Member>;

  static constexpr std::size_t kDefaultMaxDepth = 256;

  static JsonValue parse(std::string_view text, std::size_t max_depth = kDefaultMaxDepth);

  JsonValue() = default;  // null
  static JsonValue boolean(bool b);
  static JsonValue number(std::string text);  // must be a valid JSON number (unchecked)
  static JsonValue string(std::string s);
  static JsonValue array(Array items = {});
  static JsonValue object(Object members = {});

  Type type() const { return type_; }
  bool is_null() const { return type_ == Type::Null; }
  bool is_bool() const { return type_ == Type::Bool; }
  bool is_number() const { return type_ == Type::Number; }
  bool is_string() const { return type_ == Type::String; }
  bool is_array() const { return type_ == Type::Array; }
  bool is_object() const { return type_ == Type::Object; }

  bool as_bool() const;
  double as_double() const;
  int64_t as_int64() const;    // throws JsonTypeError unless an integer in range
  uint64_t as_uint64() const;  // likewise
  const std::string& as_string() const;
  const std::string& number_text() const;  // the number as written
  const Array& as_array() const;
  const Object& as_object() const;

  // Member lookup: nullptr when this is not an object or has no such key.
  const JsonValue* find(std::string_view key) const;
  // Lenient access for display code: a null value when missing or of another type.
  const JsonValue& operator[](std::string_view key) const;
  const JsonValue& operator[](std::size_t index) const;
  std::size_t size() const;  // elements or members; 0 otherwise
  // The string, the number's text, "true"/"false", or fallback (null, containers).
  std::string text_or(std::string_view fallback = "") const;

  // JSON text. indent < 0: compact ({"a": 1, "b": [1, 2]}); otherwise pretty-printed
  // with that many spaces per level (empty containers stay "[]" and "{}").
  std::string dump(int indent = -1) const;
  // YAML rendering in kubectl's manner (block style, "- " items at their key's level,
  // strings quoted only where YAML would read them otherwise). Ends with a newline.
  std::string to_yaml() const;

  friend bool operator==(const JsonValue& a, const JsonValue& b);

 private:
  void dump_to(std::string& out, int indent, int level) const;
  void yaml_to(std::string& out, int level, bool in_sequence) const;

  Type type_ = Type::Null;
  bool bool_ = false;
  std::string text_;  // string value or number text
  Array array_;
  Object object_;
};

// JSON string literal with quotes; non-ASCII UTF-8 kept as is.
std::string json_quote(std::string_view s);

}  // namespace nplb
