-- tracesafe in Neovim: put this in your init.lua (or a ftplugin/python.lua).
-- Neovim 0.8 and later: vim.lsp.start; 0.7: vim.lsp.start_client + vim.lsp.buf_attach_client.
local function tracesafe_root(bufnr)
  local name = vim.api.nvim_buf_get_name(bufnr)
  local found = vim.fn.findfile("pyproject.toml", vim.fn.fnamemodify(name, ":p:h") .. ";")
  return found ~= "" and vim.fn.fnamemodify(found, ":p:h") or vim.fn.fnamemodify(name, ":p:h")
end

local tracesafe_clients = {}

vim.api.nvim_create_autocmd("FileType", {
  pattern = "python",
  callback = function(args)
    local config = { name = "tracesafe", cmd = { "tracesafe", "server" }, root_dir = tracesafe_root(args.buf) }
    if vim.lsp.start then
      vim.lsp.start(config)
    else
      local root = config.root_dir
      tracesafe_clients[root] = tracesafe_clients[root] or vim.lsp.start_client(config)
      vim.lsp.buf_attach_client(args.buf, tracesafe_clients[root])
    end
  end,
})
