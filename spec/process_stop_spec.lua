-- A terminate() reaches an init that loops even when the worker process
-- is off the CPU while the parent signals it. The parent sends the task's
-- SIGURG, then the shutdown's (number 0; it was sent again 20 ms later);
-- non-realtime signals do not queue, so a worker that runs only after all
-- of them saw one, the task's, and its init ran on until the kill 1 s later
-- (about 1 run in 13 under ASan at load 10). The shutdown is now also in
-- the worker's ledger, which the handler reads (and begin_run, so the
-- second signal is gone).
local support = require "spec.support"

describe("process pools", function()
  it("terminate() stops a looping init whose process was stopped while signalled #child", function()
    local out, err, status = support.run_child{ timeout = 30, code = [[
      local parallel = require "parallel"
      local ev, pid = parallel.event(), parallel.value("int64", 0)
      local p = parallel.pool{backend = "process", workers = 1, init = function(ev, pid)
        pid:set(io.open("/proc/self/stat"):read("n")) ev:set() while true do end
      end, init_args = {ev, pid}}
      local f = p:submit(function() return 1 end)
      assert(ev:wait(10))
      -- the task sent to the worker (else terminate only cancels it from the queue)
      local t = parallel.now() + 10
      while f:state() == "pending" and parallel.now() < t do parallel.sleep(0.001) end
      assert(f:state() == "running", f:state())
      -- the worker off the CPU while every SIGURG is sent (the condition
      -- under test, not a wait for something)
      assert(os.execute("kill -STOP " .. pid:get()))
      assert(os.execute("(sleep 0.2; kill -CONT " .. pid:get() .. ") &"))
      local t0 = parallel.now()
      p:terminate()
      print(parallel.now() - t0 < 0.9, f:state(), (tostring(f:error()):match("^pool init failed: interrupted")))
    ]] }
    assert.equal(0, status, err)
    assert.equal("true\tfailed\tpool init failed: interrupted\n", out)
  end)
end)
