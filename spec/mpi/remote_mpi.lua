-- Shared objects handed to tasks on other ranks (wire/remote.h over MPI,
-- src/mpi/remote_mpi.c): rank 0 owns them, a task's calls are requests.
local parallel = require "parallel"
local mpi = require "parallel.mpi"

describe("shared objects across ranks", function()
  local pool, others
  setup(function()
    pool = parallel.pool { backend = "mpi", workers = 2 }
    others = mpi.size() - 1
  end)
  teardown(function() pool:shutdown() end)

  it("a queue: producers on every rank, the consumer here, nothing lost or doubled", function()
    local q = parallel.queue()
    local fs = {}
    for t = 1, 2 * others do
      fs[t] = pool:submit(function(q, t)
        for i = 1, 200 do q:push(t * 1000 + i) end
        q:push({t = t})
        return true
      end, q, t)
    end
    local seen, n, tables = {}, 0, 0
    while n < 2 * others * 201 do
      local v = assert(q:pop(30))
      if type(v) == "table" then tables = tables + 1
      else assert.is_nil(seen[v]); seen[v] = true end
      n = n + 1
    end
    for t = 1, #fs do assert.is_true(fs[t]:get(30)) end
    assert.equal(2 * others, tables)
  end)

  it("a queue the other way: a task blocks in pop until this rank pushes", function()
    local q = parallel.queue()
    local f = pool:submit(function(q)
      local a, b = q:pop(30), q:pop(30)
      return a + b, q:pop(0.1)
    end, q)
    q:push(40); q:push(2)
    assert.same({42, nil, "timeout"}, {f:get(30)})
  end)

  it("a dict updated from tasks on every rank", function()
    local d = parallel.dict()
    d.n = 0
    local fs = {}
    for t = 1, 2 * others do
      fs[t] = pool:submit(function(d) for _ = 1, 50 do d:update("n", function(v) return v + 1 end) end end, d)
    end
    for t = 1, #fs do fs[t]:get(60) end
    assert.equal(100 * others, d.n)
  end)

  it("a future and a thread pool of rank 0, used from a task on another rank", function()
    local threads <close> = parallel.pool(1)
    local fut = threads:submit(function() return "from rank 0" end)
    assert.same({"from rank 0", 7}, {pool:submit(function(f, p)
      return f:get(30), p:submit(function(x) return x + 1 end, 6):get(30)
    end, fut, threads):get(30)})
  end)

  it("a thread pool of rank 0 maps from a task on another rank; its futures take callbacks", function()
    local threads <close> = parallel.pool(2)
    local r = table.pack(pool:submit(function(p)
      local parallel = require "parallel"
      local out = {}
      for i, v in p:imap_unordered(function(x) return x * x end, {1, 2, 3, 4}) do out[i] = v end
      local seen
      local f = p:submit(function() return "cb" end)
      f:add_done_callback(function(g) seen = g:get() end)
      f:wait(30)
      parallel.poll()
      local ok, err = pcall(p.map, p, function(x) if x == 2 then error("two") end return x end,
                            {1, 2, 3}, {chunksize = 1})
      return p:map(function(x) return x + 1 end, {1, 2, 3}), out, seen, not ok and err:match("^[^\n]*")
    end, threads):get(30))
    assert.same({2, 3, 4, n = 3}, r[1])
    assert.same({1, 4, 9, 16}, r[2])
    assert.equal("cb", r[3])
    assert.matches("^item 2: .*two$", r[4])
  end)

  it("comes back as the very object", function()
    local q = parallel.queue()
    assert.is_true(rawequal(q, pool:submit(function(q) return q end, q):get(30)))
  end)
end)
