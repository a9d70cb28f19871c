-- Value transfer (API.md, "What can travel between threads"), row by row.
-- Each value is sent through pool:apply both as a round trip (sent to a worker
-- and back) and inspected inside the worker (booleans computed there).

local support = require "spec.support"
local run_lua = support.run_lua
local error_of, assert_raises, assert_raises_containing = support.error_of, support.assert_raises, support.assert_raises_containing
local parallel = require "parallel"

-- Global helpers defined by this "sending script" (busted's file environment).
function codec_spec_square(x) return x * x end
function codec_spec_sum_sq(x) return codec_spec_square(x) + codec_spec_square(x + 1) end
CODEC_SPEC_LIMIT = 1000

describe("codec", function()
  local pool

  local function rt(...) return pool:apply(function(...) return ... end, ...) end

  lazy_setup(function() pool = parallel.pool(2) end)
  lazy_teardown(function() if pool then pool:shutdown{cancel = true} end end)

  describe("nil", function()
    it("travels as an argument and a result", function()
      local n, isnil = pool:apply(function(...) return select("#", ...), (...) == nil end, nil)
      assert.equal(1, n)
      assert.is_true(isnil)
      assert.equal(1, select("#", rt(nil)))
      assert.is_nil((rt(nil)))
    end)

    it("keeps nils between arguments and between results", function()
      local r = table.pack(pool:apply(function(a, b, c)
        return select("#", a, b, c), a, b, c
      end, 1, nil, 3))
      assert.same({n = 4, 3, 1, nil, 3}, r)
      local back = table.pack(rt(nil, 2, nil))
      assert.equal(3, back.n)
      assert.is_nil(back[1]); assert.equal(2, back[2]); assert.is_nil(back[3])
    end)
  end)

  describe("booleans", function()
    it("travel by value", function()
      assert.is_true(rt(true))
      assert.is_false(rt(false))
      assert.is_true(pool:apply(function(t, f)
        return type(t) == "boolean" and t == true and type(f) == "boolean" and f == false
      end, true, false))
    end)
  end)

  describe("strings", function()
    it("travel binary-safe with \\0 bytes", function()
      local s = "a\0b\0\0c\255\254" .. string.char(0, 1, 2)
      assert.equal(s, rt(s))
      assert.is_true(pool:apply(function(x)
        return #x == 11 and x:byte(2) == 0 and x:byte(4) == 0 and x:byte(7) == 255 and x:byte(9) == 0
      end, s))
    end)

    it("keep every byte value", function()
      local t = {}
      for i = 0, 255 do t[#t + 1] = string.char(i) end
      local all = table.concat(t)
      assert.equal(all, rt(all))
      assert.is_true(pool:apply(function(x)
        for i = 0, 255 do if x:byte(i + 1) ~= i then return false end end
        return #x == 256
      end, all))
    end)

    it("keep the empty string and a large string", function()
      assert.equal("", rt(""))
      local big = string.rep("ab\0", 400000)
      assert.equal(big, rt(big))
      assert.equal(#big, pool:apply(function(x) return #x end, big))
    end)
  end)

  describe("numbers", function()
    local cases = {
      {"integer 3", 3, "integer"},
      {"float 3.0", 3.0, "float"},
      {"integer 0", 0, "integer"},
      {"integer -1", -1, "integer"},
      {"float 0.1", 0.1, "float"},
      {"math.pi", math.pi, "float"},
      {"math.maxinteger", math.maxinteger, "integer"},
      {"math.mininteger", math.mininteger, "integer"},
      {"float 2^53", 2.0 ^ 53, "float"},
      {"float 2^63", 2.0 ^ 63, "float"},
      {"math.huge", math.huge, "float"},
      {"-math.huge", -math.huge, "float"},
      {"float 1e308", 1e308, "float"},
      {"the smallest denormal", 4.9406564584124654e-324, "float"},
    }
    for _, c in ipairs(cases) do
      local name, v, mtype = c[1], c[2], c[3]
      it("keep the value and subtype of " .. name, function()
        local r = rt(v)
        assert.equal(mtype, math.type(r))
        assert.is_true(r == v)
        assert.is_true(pool:apply(function(x, expected_type, expected_repr)
          return math.type(x) == expected_type and string.format("%.17g", x) == expected_repr
        end, v, mtype, string.format("%.17g", v)))
      end)
    end

    it("keep -0.0 negative (1/x == -inf)", function()
      local r = rt(-0.0)
      assert.equal("float", math.type(r))
      assert.equal(-math.huge, 1 / r)
      assert.is_true(pool:apply(function(x) return math.type(x) == "float" and 1 / x == -math.huge end, -0.0))
    end)

    it("keep NaN", function()
      local nan = 0 / 0
      local r = rt(nan)
      assert.equal("float", math.type(r))
      assert.is_true(r ~= r)
      assert.is_true(pool:apply(function(x) return math.type(x) == "float" and x ~= x end, nan))
    end)

    it("keep math.mininteger an integer in arithmetic on the other side", function()
      assert.is_true(pool:apply(function(x) return x == math.mininteger and x - 1 == math.maxinteger end,
        math.mininteger))
    end)
  end)

  describe("tables", function()
    it("are deep-copied, not shared with the sender", function()
      local t = {a = 1, sub = {b = 2, list = {1, 2, 3}}}
      local r = rt(t)
      assert.are_not.equal(t, r)
      assert.are_not.equal(t.sub, r.sub)
      assert.same(t, r)
      assert.equal(99, pool:apply(function(x) x.sub.b = 99; x.a = 99; return x.sub.b end, t))
      assert.equal(1, t.a)
      assert.equal(2, t.sub.b)
    end)

    it("keep keys of every sendable type", function()
      local key_table = {k = true}
      local t = {[1] = "one", [2.5] = "two and a half", [true] = "yes", [false] = "no",
                 [-7] = "neg", [0] = "zero", [math.maxinteger] = "max", name = "str",
                 ["a\0b"] = "binary key", [key_table] = "table key"}
      local r = rt(t)
      assert.equal("one", r[1]); assert.equal("two and a half", r[2.5])
      assert.equal("yes", r[true]); assert.equal("no", r[false])
      assert.equal("neg", r[-7]); assert.equal("zero", r[0]); assert.equal("max", r[math.maxinteger])
      assert.equal("str", r.name); assert.equal("binary key", r["a\0b"])
      local found
      for k, v in pairs(r) do
        if type(k) == "table" then found = {k, v} end
      end
      assert.is_table(found)
      assert.same({k = true}, found[1])
      assert.equal("table key", found[2])
    end)

    it("keep holes in arrays", function()
      local r = rt({1, nil, 3, nil, 5})
      assert.equal(1, r[1]); assert.is_nil(r[2]); assert.equal(3, r[3]); assert.is_nil(r[4]); assert.equal(5, r[5])
    end)

    it("keep cycles", function()
      local t = {name = "root"}
      t.self = t
      t.child = {parent = t}
      local r = rt(t)
      assert.equal(r, r.self)
      assert.equal(r, r.child.parent)
      assert.is_true(pool:apply(function(x) return x.self == x and x.child.parent == x and x.name == "root" end, t))
    end)

    it("keep shared sub-tables shared (t.a == t.b)", function()
      local s = {v = 1}
      local t = {a = s, b = s, list = {s, s}}
      local r = rt(t)
      assert.equal(r.a, r.b)
      assert.equal(r.a, r.list[1])
      assert.equal(r.list[1], r.list[2])
      assert.is_true(pool:apply(function(x)
        x.a.v = 42
        return x.a == x.b and x.b.v == 42 and x.list[2].v == 42
      end, t))
    end)

    it("keep a table shared between two arguments and between two results", function()
      local s = {}
      assert.is_true(pool:apply(function(a, b) return a == b end, s, s))
      local r1, r2 = pool:apply(function() local x = {}; return x, x end)
      assert.equal(r1, r2)
    end)

    it("copy metatables, whose methods work on the other side", function()
      local Point = {}
      Point.__index = Point
      function Point.norm2(p) return p.x * p.x + p.y * p.y end
      Point.__tostring = function(p) return "(" .. p.x .. "," .. p.y .. ")" end
      Point.__add = function(a, b) return setmetatable({x = a.x + b.x, y = a.y + b.y}, getmetatable(a)) end
      local p = setmetatable({x = 3, y = 4}, Point)
      assert.same({25, "(3,4)", "(6,8)"}, {pool:apply(function(q)
        return q:norm2(), tostring(q), tostring(q + q)
      end, p)})
      local r = rt(p)
      assert.is_table(getmetatable(r))
      assert.equal(25, r:norm2())
      assert.equal("(3,4)", tostring(r))
    end)

    it("keep one metatable shared by two objects", function()
      local mt = {__index = {kind = "obj"}}
      local a, b = setmetatable({}, mt), setmetatable({}, mt)
      local ra, rb = rt(a, b)
      assert.equal(getmetatable(ra), getmetatable(rb))
      assert.is_true(pool:apply(function(x, y) return getmetatable(x) == getmetatable(y) and x.kind == "obj" end, a, b))
    end)

    it("are copied raw (a __len metamethod does not change the contents)", function()
      local t = setmetatable({1, 2}, {__len = function() return 100 end})
      local r = rt(t)
      assert.equal(2, rawlen(r))
      assert.equal(100, #r)
    end)

    it("travel when large (a 1,000,000-number list)", function()
      local t = {}
      for i = 1, 1000000 do t[i] = i end
      local r = rt(t)
      assert.equal(1000000, #r)
      assert.equal(1000000, r[1000000])
      assert.equal(500000500000, pool:apply(function(x)
        local s = 0
        for i = 1, #x do s = s + x[i] end
        return s
      end, t))
    end)

    it("travel when large, one after another, each arriving whole (memory reused between them)", function()
      -- sizes up and down, so that kept blocks are reused for smaller ones
      for _, n in ipairs{300000, 200000, 300000, 150000, 300000} do
        local t = {}
        for i = 1, n do t[i] = (i + n) * 0.5 end
        local sum, len, last = pool:apply(function(x)
          local s = 0
          for i = 1, #x do s = s + x[i] end
          return s, #x, x[#x]
        end, t)
        assert.equal(n, len)
        assert.equal((n + n) * 0.5, last)
        local expect = 0
        for i = 1, n do expect = expect + t[i] end
        assert.equal(expect, sum)
        local back = rt(t)
        assert.equal(n, #back)
        assert.equal(t[n], back[n])
        assert.equal(t[1], back[1])
      end
    end)

    -- An argument of 100000 items or more goes in segments, decoded by the
    -- worker while the caller still encodes the rest.
    describe("as a long argument sent in segments", function()
      it("arrive whole: mixed items, a table shared across segments and with a later argument, objects, functions, the hash part and the metatable", function()
        local n = 600000
        local shared, q = {tag = "shared"}, parallel.queue()
        local t = {}
        for i = 1, n do t[i] = i end
        t[1], t[n] = shared, shared
        t[200000] = nil
        t[300000], t[450000], t[500000] = "middle", q, {1, 2, {3}}
        t[550000] = function(x) return x * 2 end
        t.name = "big"
        setmetatable(t, {__index = {kind = "list"}})
        local after = {link = shared}
        local expect = 0
        for i = 1, n do if math.type(t[i]) == "integer" then expect = expect + t[i] end end
        local r = {pool:apply(function(t, after, q, n)
          local s = 0
          for i = 1, n do if math.type(t[i]) == "integer" then s = s + t[i] end end
          return s, t[1] == t[n] and t[1] == after.link and t[1].tag == "shared", t[200000] == nil,
                 t[300000], t[450000] == q, t[500000][3][1], t[550000](21), t.name, t.kind
        end, t, after, q, n)}
        assert.same({expect, true, true, "middle", true, 3, 42, "big", "list"}, r)
        q:push("seen")                         -- the worker's q is this queue
        assert.equal("seen", pool:apply(function(t) return t[450000]:pop(0) end, t))
      end)

      it("fail the submit when a value far into it cannot travel; the pool goes on", function()
        local t = {}
        for i = 1, 300000 do t[i] = i end
        t[290000] = coroutine.create(function() end)
        for _ = 1, 3 do
          assert_raises("cannot send thread at args[1][290000]: a coroutine cannot travel; create it inside the task", pool.submit, pool, function(x) return #x end, t)
        end
        t[290000] = 0
        assert.equal(300000, pool:apply(function(x) return #x end, t))
      end)

      it("leave the task that had started behind as failed, without running it, and out of completed()", function()
        local p <close> = parallel.pool(1)
        p:fd()                                  -- completions are listed from now on
        local ran = parallel.value("int64", 0)
        local t = {}
        for i = 1, 300000 do t[i] = i end
        t[290000] = coroutine.create(function() end)
        assert_raises("cannot send thread at args[1][290000]: a coroutine cannot travel; create it inside the task", p.submit, p,
          function(x, ran) ran:add(1) return #x end, t, ran)
        local f = p:submit(function() return "next" end)
        assert.equal("next", f:get())
        p:shutdown()
        local s = p:stats()
        assert.same({2, 1, 1, 0}, {s.submitted, s.completed, s.failed, s.cancelled})
        assert.equal(0, ran:get())
        local done = p:completed()
        assert.equal(1, #done)
        assert.equal(f, done[1])
      end)

      it("fail only their task when the worker runs out of memory decoding them", function()
        local p <close> = parallel.pool{workers = 1, memory_limit = 8 * 1024 * 1024}
        local t = {}
        for i = 1, 1000000 do t[i] = i end
        assert_raises_containing("not enough memory", function() return p:apply(function(x) return #x end, t) end)
        assert.equal(7, p:apply(function(x) return x + 1 end, 6))
      end)
    end)

    -- Long sequences: each shape below must arrive whole, however Lua
    -- stores it (array part, hash part, both, with emptied nodes).
    describe("with a long sequence", function()
      local function same_contents(a, b)
        for k, v in pairs(a) do if b[k] ~= v then return false end end
        for k, v in pairs(b) do if a[k] ~= v then return false end end
        return true
      end

      it("keep the sequence and the other keys of a mixed table", function()
        local t = {}
        for i = 1, 1000 do t[i] = i % 3 == 0 and i * 0.5 or i end
        t.name, t[-1], t[0], t[1.5], t[5000], t[true] = "mixed", "neg", "zero", "half", "far", "bool"
        local r = rt(t)
        assert.is_true(same_contents(t, r))
        assert.equal(math.type(t[3]), math.type(r[3]))
        assert.equal(math.type(t[4]), math.type(r[4]))
      end)

      it("keep holes, strings, booleans, tables and shared tables among numbers", function()
        local s = {shared = true}
        local t = {}
        for i = 1, 300 do t[i] = i end
        t[10], t[20], t[30], t[40], t[50] = nil, "str", false, s, s
        t[60] = {nested = {1, 2, 3}}
        local r = rt(t)
        assert.is_nil(r[10])
        assert.equal("str", r[20])
        assert.is_false(r[30])
        assert.equal(r[40], r[50])
        assert.is_true(r[40].shared)
        assert.same({1, 2, 3}, r[60].nested)
        assert.equal(300, r[300])
        t[10] = nil
        assert.is_true(pool:apply(function(x) return x[40] == x[50] and x[10] == nil and #x[60].nested == 3 end, t))
      end)

      -- A constructor's [k] = v fields go to the hash part, sized up front.
      local function constructor(first, last, extra)
        local parts = {}
        for i = first, last do parts[#parts + 1] = ("[%d] = %d"):format(i, i * 2) end
        for i = 1, extra do parts[#parts + 1] = ("k%d = %d"):format(i, i) end
        return "{" .. table.concat(parts, ", ") .. "}"
      end

      it("keep a sequence stored in the hash part", function()
        local t = load("return " .. constructor(1, 500, 50))()
        local r = rt(t)
        assert.is_true(same_contents(t, r))
      end)

      it("keep a sequence whose array part is exactly full (a table constructor)", function()
        local t = load("return {" .. ("7, "):rep(70) .. "x = 'x'}")()
        local r = rt(t)
        assert.is_true(same_contents(t, r))
      end)

      it("keep a sequence running on from the array part into the hash part", function()
        -- array part: exactly 1..100; keys 101..120 and k1..k50 in the hash
        local src = constructor(101, 120, 50):gsub("^{", "{" .. ("3, "):rep(100))
        local t = load("return " .. src)()
        assert.equal(120, #t)
        local r = rt(t)
        assert.is_true(same_contents(t, r))
      end)

      it("keep a sequence filled backwards", function()
        local t = {}
        for i = 500, 1, -1 do t[i] = i * 2 end
        t.tag = "backwards"
        local r = rt(t)
        assert.is_true(same_contents(t, r))
      end)

      it("send a sparse array part as pairs, not as a run of nils (a queue's emptied front)", function()
        local p <close> = parallel.pool{workers = 1, memory_limit = 6 * 1024 * 1024}
        local t = {}
        for i = 1, 600000 do t[#t + 1] = i end  -- array part: about 10 MB
        for i = 1, 599900 do t[i] = nil end   -- consumed from the front
        -- #t is still 600000; as a run from 1 the receiver would need the whole array again
        local count, sum = p:apply(function(x)
          local c, s = 0, 0
          for _, v in pairs(x) do c, s = c + 1, s + v end
          return c, s
        end, t)
        assert.equal(100, count)
        assert.equal((599901 + 600000) * 50, sum)
        -- a hole in the middle: the part after it arrives as pairs
        local u = {}
        for i = 1, 1000 do u[i] = i end
        u[500] = nil
        local r = rt(u)
        assert.is_nil(r[500])
        assert.equal(499, r[499])
        assert.equal(501, r[501])
        assert.equal(1000, r[1000])
      end)

      it("lose no key of a table whose hash part holds an emptied t[#t + 1] (pushed, then popped)", function()
        -- an emptied hash node makes t[#t + 1] look like an array slot to
        -- next(): a codec that read t[1..#t] by index and resumed the
        -- traversal there would skip the string keys before that node
        for trial = 1, 60 do
          local t = {}
          for i = 1, 60 + trial do t["k" .. i] = i end
          for i = 1, 60 + trial do t["k" .. i] = nil end
          for i = 1, 40 do t["f" .. i] = i end
          local n = 64 + trial % 40
          for i = 1, n do t[i] = i end
          t[n + 1] = true
          t[n + 1] = nil
          local count = 0
          for _ in pairs(t) do count = count + 1 end
          assert.equal(count, pool:apply(function(x)
            local c = 0
            for _ in pairs(x) do c = c + 1 end
            return c
          end, t))
          assert.equal(40, pool:apply(function(x) return x.f40 end, t))
        end
      end)

      it("keep everything when sent on again (received, then resent)", function()
        local t = {}
        for i = 1, 200 do t[i] = i end
        t.x = "y"
        local r = pool:apply(function(x)
          local inner = parallel.pool(1)
          local back = inner:apply(function(y) return y end, x)
          inner:shutdown()
          return back
        end, t)
        assert.is_true(same_contents(t, r))
      end)

      it("name the index of a value that cannot travel", function()
        local t = {}
        for i = 1, 100 do t[i] = i end
        t[77] = coroutine.create(function() end)
        assert_raises("cannot send thread at args[1][77]: a coroutine cannot travel; create it inside the task", pool.apply, pool, function(x) return x end, t)
        t[77] = 77
        assert.equal(100, pool:apply(function(x) return #x end, t))
      end)
    end)

    it("travel when functions nest deeply: 300 closures, each the upvalue of the next", function()
      local f = function() return 0 end
      for _ = 1, 300 do
        local g = f
        f = function() return g() + 1 end
      end
      assert.equal(300, pool:apply(function(h) return h() end, f))
      local cur = {}
      for _ = 1, 300 do
        local h = cur
        cur = { f = function() return h end }
      end
      assert.equal("table", pool:apply(function(x) return type(x.f().f()) end, cur))
    end)

    it("travel when deeply nested (200 levels)", function()
      local t = {}
      local cur = t
      for i = 1, 200 do cur.next = {depth = i}; cur = cur.next end
      assert.equal(200, pool:apply(function(x)
        local d = 0
        while x.next do x = x.next; d = x.depth end
        return d
      end, t))
    end)

    it("do not crash the process when absurdly nested (100000 levels) #child", function()
      local out, err, code = run_lua([[
        local parallel = require "parallel"
        local pool = parallel.pool(1)
        local t = {}
        local cur = t
        for i = 1, 100000 do cur[1] = {}; cur = cur[1] end
        local ok, e = pcall(pool.apply, pool, function(x) return x ~= nil end, t)
        print(ok and "sent" or "raised")
        pool:shutdown()
      ]])
      assert.equal(0, code, err)
      assert.is_truthy(out:match("^sent") or out:match("^raised"))
    end)
  end)

  describe("loaded modules", function()
    it("travel by name (the receiver's own module)", function()
      assert.equal(string, rt(string))
      assert.equal(math, rt(math))
      assert.equal(parallel, rt(parallel))
      assert.is_true(pool:apply(function(s, m, p)
        return s == string and m == math and p == require("parallel")
      end, string, math, parallel))
    end)

    it("travel by name inside a table", function()
      local r = rt({lib = table, os = os})
      assert.equal(table, r.lib)
      assert.equal(os, r.os)
    end)

    it("travel by name as upvalues of a function (string, parallel)", function()
      local str = string
      assert.equal("ABC", pool:apply(function(s) return str.upper(s) end, "abc"))
      assert.is_true(pool:apply(function() return math.type(parallel.cpu_count()) == "integer" end))
    end)

    describe("of the user", function()
      local dir, mpool, saved_path
      lazy_setup(function()
        -- The temporary directory itself (no child process: ThreadSanitizer
        -- runs cannot fork).
        local tmp = os.tmpname()
        os.remove(tmp)
        dir = tmp:match("^(.*)/[^/]*$") or "."
        local f = assert(io.open(dir .. "/codec_spec_mod.lua", "w"))
        f:write("local M = {instances = (CODEC_SPEC_MOD_LOADS or 0) + 1}\n",
                "CODEC_SPEC_MOD_LOADS = M.instances\n",
                "function M.hello() return 'hello from module' end\n",
                "return M\n")
        f:close()
        saved_path = package.path
        package.path = dir .. "/?.lua;" .. package.path
        mpool = parallel.pool(1)
      end)
      lazy_teardown(function()
        if mpool then mpool:shutdown{cancel = true} end
        if saved_path then package.path = saved_path end
        package.loaded.codec_spec_mod = nil
        os.remove(dir .. "/codec_spec_mod.lua")
      end)

      it("travels by name: the worker requires it (not a copy)", function()
        local mod = require "codec_spec_mod"
        local same, hello = mpool:apply(function(m)
          return m == require("codec_spec_mod"), m.hello()
        end, mod)
        assert.is_true(same)
        assert.equal("hello from module", hello)
        assert.equal(mod, mpool:apply(function(m) return m end, mod))
      end)

      it("is required once per worker, not once per task", function()
        local mod = require "codec_spec_mod"
        for _ = 1, 3 do
          assert.equal(1, mpool:apply(function(m) return m.instances end, mod))
        end
      end)

      it("travels by name after a reload (package.loaded[name] replaced by a new table)", function()
        local old = require "codec_spec_mod"
        assert.equal(old, mpool:apply(function(m) return m end, old))
        package.loaded.codec_spec_mod = nil
        local new = require "codec_spec_mod"
        assert.are_not.equal(old, new)
        assert.equal(new, mpool:apply(function(m) return m end, new))
        assert.is_true(mpool:apply(function(m) return m == require("codec_spec_mod") end, new))
      end)
    end)
  end)

  describe("Lua functions", function()
    it("travel with their upvalues", function()
      local k, cfg = 10, {scale = 3}
      assert.equal(45, pool:apply(function(x) return (x + k) * cfg.scale end, 5))
    end)

    it("travel as arguments and as results", function()
      assert.equal(42, pool:apply(function(g, x) return g(x) end, function(y) return y * 2 end, 21))
      local g = pool:apply(function() local base = 100; return function(a) return a + base end end)
      assert.equal(101, g(1))
      local h = rt(function(a) return a + 1 end)
      assert.equal(2, h(1))
    end)

    it("copy upvalues: the sender's variables are not changed", function()
      local n = 1
      local bump = function() n = n + 1; return n end
      assert.equal(2, pool:apply(bump))
      assert.equal(1, n)
    end)

    it("send the current upvalue values each time (no stale cache)", function()
      local k = 1
      local f = function() return k end
      assert.equal(1, pool:apply(f))
      k = 2
      assert.equal(2, pool:apply(f))
      local function make(v) return function() return v end end
      assert.equal(10, pool:apply(make(10)))
      assert.equal(20, pool:apply(make(20)))
    end)

    it("keep an upvalue shared by two closures shared (counter inc/get)", function()
      local function counter()
        local n = 0
        return function() n = n + 1; return n end, function() return n end
      end
      local inc, get = counter()
      inc()
      assert.equal(3, pool:apply(function(i, g) i(); i(); return g() end, inc, get))
      assert.equal(1, get())
      local both = function() inc(); return get() end
      assert.equal(2, pool:apply(both))
      local i2, g2 = rt(inc, get)
      i2(); i2()
      assert.equal(3, g2())
      assert.equal(1, get())
    end)

    it("keep a recursive local function working", function()
      local function fact(n) if n <= 1 then return 1 end return n * fact(n - 1) end
      assert.equal(3628800, pool:apply(fact, 10))
      assert.equal(3628800, pool:apply(function(x) return fact(x) end, 10))
    end)

    it("keep mutually recursive local functions working", function()
      local is_even, is_odd
      function is_even(n) if n == 0 then return true end return is_odd(n - 1) end
      function is_odd(n) if n == 0 then return false end return is_even(n - 1) end
      assert.is_true(pool:apply(is_even, 10))
      assert.is_true(pool:apply(is_odd, 7))
    end)

    it("get the receiver's globals as _ENV", function()
      assert.is_true(pool:apply(function() return _ENV == _G and _G.string == string end))
      local one = parallel.pool(1)
      one:apply(function() codec_spec_worker_only = "set in worker" end)
      assert.equal("set in worker", one:apply(function() return codec_spec_worker_only end))
      one:shutdown()
      assert.is_nil(rawget(_G, "codec_spec_worker_only"))
      assert.is_nil(codec_spec_worker_only)
    end)

    it("keep their source position for error messages", function()
      local e = error_of(pool.apply, pool, function() error("positioned") end)
      assert.is_truthy(e:find("codec_spec%.lua:%d+: positioned"), e)
    end)
  end)

  describe("global helpers of a function", function()
    it("travel with it (a helper defined in the sending script)", function()
      assert.equal(9, pool:apply(function(x) return codec_spec_square(x) end, 3))
    end)

    it("travel recursively (helpers of helpers) with global constants", function()
      assert.equal(1001, pool:apply(function(x) return codec_spec_sum_sq(x) + CODEC_SPEC_LIMIT end, 0))
    end)

    it("work in a child script: helper, helper of helper, recursive global, constant, nested closure #child", function()
      local out, err, code = run_lua([[
        local parallel = require "parallel"
        function square(x) return x * x end
        function sum_sq(x) return square(x) + square(x + 1) end
        function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end
        LIMIT = 1000
        CONFIG = {factor = 10}
        local pool = parallel.pool(2)
        local r = pool:map(function(x)
          local inner = function(y) return sum_sq(y) * CONFIG.factor end
          return inner(x) + fib(10) + LIMIT
        end, {1, 2, 3})
        print(r.n, r[1], r[2], r[3])
        pool:shutdown()
      ]])
      assert.equal(0, code, err)
      assert.equal("3\t1105\t1185\t1305\n", out)
    end)

    it("are sent with their current values each time #child", function()
      local out, err, code = run_lua([[
        local parallel = require "parallel"
        function h() return 1 end
        K = "a"
        local pool = parallel.pool(1)
        local f = function() return h(), K end
        print(pool:apply(f))
        function h() return 2 end
        K = "b"
        print(pool:apply(f))
        pool:shutdown()
      ]])
      assert.equal(0, code, err)
      assert.equal("1\ta\n2\tb\n", out)
    end)

    it("do not replace the worker's standard library #child", function()
      local out, err, code = run_lua([[
        local parallel = require "parallel"
        local pool = parallel.pool(1)
        print(pool:apply(function() return type(print), type(string.format), math.type(1) end))
        pool:shutdown()
      ]])
      assert.equal(0, code, err)
      assert.equal("function\tfunction\tinteger\n", out)
    end)
  end)

  describe("C functions", function()
    it("travel by name when reachable from a loaded module", function()
      assert.equal(math.sqrt, rt(math.sqrt))
      assert.equal(string.format, rt(string.format))
      assert.equal(4.0, pool:apply(function(f) return f(16) end, math.sqrt))
      assert.is_true(pool:apply(function(f, g) return f == math.sqrt and g == string.format end,
        math.sqrt, string.format))
    end)

    it("travel by their module's name when a global aliases them too", function()
      -- the alias makes math.sqrt a field of the sender's _G as well, which
      -- the receiver's _G lacks: the name must still be math.sqrt
      rawset(_G, "codec_spec_sqrt", math.sqrt)
      local ok, r1 = pcall(pool.apply, pool, function(x) return codec_spec_sqrt(x) end, 16)
      local ok2, r2 = pcall(pool.apply, pool, function(f, x) return f(x) end, math.sqrt, 25)
      rawset(_G, "codec_spec_sqrt", nil)
      assert.is_true(ok, r1)
      assert.equal(4.0, r1)
      assert.is_true(ok2, r2)
      assert.equal(5.0, r2)
    end)

    it("travel as upvalues and inside tables", function()
      local fmt = string.format
      assert.equal("003.1", pool:apply(function(x) return fmt("%05.1f", x) end, 3.14159))
      assert.equal(3, pool:apply(function(t) return t.f(3.7) end, {f = math.floor}))
    end)
  end)

  describe("shared objects", function()
    it("travel by reference: a task receives a future and calls get on it", function()
      local f1 = pool:submit(function() return 42 end)
      local f2 = pool:submit(function(f) return f:get() + 1 end, f1)
      assert.equal(43, f2:get())
    end)

    it("stay alive while a receiver holds them (reference counts)", function()
      local go = parallel.event()
      local f1 = pool:submit(function(ev) assert(ev:wait(10)); return 7 end, go)
      local f2 = pool:submit(function(f) return f:get() end, f1)
      f1 = nil
      collectgarbage(); collectgarbage()
      go:set()
      assert.equal(7, f2:get())
    end)

    it("come back as the same object (a future round trip)", function()
      local f1 = pool:submit(function() return "x" end)
      local back = rt(f1)
      assert.equal("x", back:get())
      assert.equal(f1:state(), back:state())
    end)

    it("let a task submit to the pool it receives", function()
      assert.equal(42, pool:apply(function(p, x)
        return p:submit(function(y) return y * 2 end, x):get()
      end, pool, 21))
      local inner = pool:apply(function(p) return p:submit(function() return "inner" end) end, pool)
      assert.equal("inner", inner:get())
    end)
  end)

  describe("values that cannot travel", function()
    local co = coroutine.create(function() end)

    it("a coroutine fails with the path of the argument", function()
      assert_raises("cannot send thread at args[1]: a coroutine cannot travel; create it inside the task", pool.submit, pool, function(x) return x end, co)
      assert_raises("cannot send thread at args[1]: a coroutine cannot travel; create it inside the task", pool.apply, pool, function(x) return x end, co)
    end)

    it("a FILE* fails naming its type and path (args[2].log)", function()
      assert_raises("cannot send userdata (FILE*) at args[2].log: open it inside the task or in the pool's init",
        function() pool:submit(function(x) return x end, 1, {log = io.stdout}) end)
      assert_raises("cannot send userdata (FILE*) at args[1]: open it inside the task or in the pool's init",
        function() pool:submit(function(x) return x end, io.stdout) end)
    end)

    it("a userdata without __name fails as userdata", function()
      local f = io.tmpfile()
      local mt = debug.getmetatable(f)
      debug.setmetatable(f, nil)
      local ok, e = pcall(pool.submit, pool, function(x) return x end, f)
      debug.setmetatable(f, mt)
      f:close()
      assert.is_false(ok)
      assert.equal("cannot send userdata at args[1]: open or create it inside the task or in the pool's init", (e:gsub("^[^\n]-:%d+: ", "", 1)))
    end)

    it("an unnamed C function fails as C function", function()
      local it_fn = string.gmatch("a b", "%a")
      assert_raises("cannot send C function at args[1]: only C functions of loaded modules travel (by name); get it inside the task (require its module there)",
        function() pool:submit(function(x) return x end, it_fn) end)
    end)

    it("a light userdata fails as light userdata", function()
      local lud = debug.upvalueid(function() return co end, 1)
      assert.equal("userdata", type(lud))
      assert_raises("cannot send light userdata at args[1]: a C pointer is valid only in its own Lua state; send the data it points to",
        function() pool:submit(function(x) return x end, lud) end)
    end)

    it("say what to do: a file handle read as a global (fn.LOG)", function()
      rawset(_G, "LOG", io.stdout)
      local ok, e = pcall(pool.submit, pool, function() return LOG end)
      rawset(_G, "LOG", nil)
      assert.is_false(ok)
      assert.equal("cannot send userdata (FILE*) at fn.LOG: open it inside the task or in the pool's init",
        (e:gsub("^[^\n]-:%d+: ", "", 1)))
    end)

    it("name a coroutine.wrap function as such, not as a C function", function()
      local gen = coroutine.wrap(function() coroutine.yield(1) end)
      assert_raises("cannot send coroutine.wrap function at fn.gen: a coroutine cannot travel; "
        .. "create it inside the task", function() pool:submit(function() return gen() end) end)
      local q = parallel.queue()
      assert_raises("cannot send coroutine.wrap function at item.next: a coroutine cannot travel; "
        .. "create it in the thread that uses it", function() q:push({ next = gen }) end)
    end)

    it("say what to do with an unnamed C function, a coroutine and a userdata sent to a queue", function()
      local q = parallel.queue()
      local it_fn = string.gmatch("a b", "%a")
      assert_raises("cannot send C function at fn.it_fn: only C functions of loaded modules travel "
        .. "(by name); get it inside the task (require its module there)",
        function() pool:submit(function() return it_fn() end) end)
      assert_raises("cannot send C function at item: only C functions of loaded modules travel "
        .. "(by name); get it in the thread that uses it", function() q:push(it_fn) end)
      assert_raises("cannot send thread at item[1]: a coroutine cannot travel; create it in the "
        .. "thread that uses it", function() q:push({ co }) end)
      assert_raises("cannot send userdata (FILE*) at item.f: open it in the thread that uses it",
        function() q:push({ f = io.stdout }) end)
      assert.is_nil(q:pop(0))
    end)

    it("paths name integer keys as [3]", function()
      assert_raises("cannot send thread at args[1][3]: a coroutine cannot travel; create it inside the task",
        function() pool:submit(function(x) return x end, {1, 2, co}) end)
    end)

    it("paths name other string keys as [\"a b\"]", function()
      assert_raises('cannot send thread at args[1]["a b"]: a coroutine cannot travel; create it inside the task',
        function() pool:submit(function(x) return x end, {["a b"] = co}) end)
      assert_raises('cannot send thread at args[1]["1x"]: a coroutine cannot travel; create it inside the task',
        function() pool:submit(function(x) return x end, {["1x"] = co}) end)
    end)

    it("paths follow nested tables", function()
      assert_raises("cannot send thread at args[1].a.b_2.c[1]: a coroutine cannot travel; create it inside the task",
        function() pool:submit(function(x) return x end, {a = {b_2 = {c = {co}}}}) end)
    end)

    it("paths name a function's upvalues (fn.co)", function()
      assert_raises("cannot send thread at fn.co: a coroutine cannot travel; create it inside the task", function() pool:submit(function() return co end) end)
      local inner = function() return co end
      assert_raises("cannot send thread at fn.inner.co: a coroutine cannot travel; create it inside the task", function() pool:submit(function() return inner() end) end)
      assert_raises("cannot send thread at args[1].co: a coroutine cannot travel; create it inside the task",
        function() pool:submit(function(g) return g end, function() return co end) end)
    end)

    it("a C function known only as a global of the sender fails at the sender", function()
      rawset(_G, "codec_spec_iter", ("a b"):gmatch("%a"))
      local ok, e = pcall(pool.submit, pool, function() return codec_spec_iter() end)
      rawset(_G, "codec_spec_iter", nil)
      assert.is_false(ok)
      assert.equal("cannot send C function at fn.codec_spec_iter: only C functions of loaded modules travel (by name); get it inside the task (require its module there)", (e:gsub("^[^\n]-:%d+: ", "", 1)))
    end)

    it("paths name a global the function reads (fn.name)", function()
      codec_spec_global_co = co
      local ok, e = pcall(pool.submit, pool, function() return codec_spec_global_co end)
      codec_spec_global_co = nil
      assert.is_false(ok)
      assert.equal("cannot send thread at fn.codec_spec_global_co: a coroutine cannot travel; create it inside the task", (e:gsub("^[^\n]-:%d+: ", "", 1)))
    end)

    it("are never dropped silently: keys and metatables are checked too", function()
      assert_raises_containing("cannot send thread at args[1]",
        function() pool:submit(function(x) return x end, {[co] = 1}) end)
      assert_raises_containing("cannot send userdata (FILE*) at args[1]",
        function() pool:submit(function(x) return x end, setmetatable({}, {__index = io.stdout})) end)
    end)

    it("fail parallel.spawn with the argument's path", function()
      assert_raises("cannot send thread at args[2]: a coroutine cannot travel; create it inside the task",
        function() parallel.spawn(function(a, b) return a end, 1, co) end)
    end)

    it("fail map naming the offending item", function()
      assert_raises_containing("cannot send thread at ",
        function() pool:map(function(x) return x end, {1, co, 3}) end)
    end)

    it("a returned coroutine fails the task (results[1])", function()
      local f = pool:submit(function() return coroutine.create(print) end)
      assert_raises_containing("cannot send thread at results[1]", f.get, f)
      assert.equal("failed", f:state())
      assert_raises_containing("cannot send userdata (FILE*) at results[2].x",
        function() pool:apply(function() return 1, {x = io.stdout} end) end)
    end)

    it("leave the pool usable", function()
      pcall(pool.submit, pool, function(x) return x end, co)
      assert.equal(5, pool:apply(function(x) return x end, 5))
    end)
  end)
end)
