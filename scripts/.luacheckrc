-- luacheck configuration for the Redis Functions library (voltedge.lua):
--   luacheck --config scripts/.luacheckrc scripts/voltedge.lua   (make lint-lua)
-- Redis 7 runs Lua 5.1 with a few libraries of its own. KEYS and ARGV are
-- not declared: a function gets its keys and arguments as parameters, so a
-- use of either is a mistake that luacheck should report.
std = 'lua51'
read_globals = { 'redis', 'cjson', 'cmsgpack', 'bit', 'struct' }
-- Lua 5.1 globals that Redis does not provide to scripts and functions.
not_globals = { 'io', 'os', 'dofile', 'loadfile', 'require', 'module', 'package', 'debug' }
max_line_length = 120
