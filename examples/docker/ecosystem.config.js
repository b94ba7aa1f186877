// The seed's ecosystem file, unchanged but for English comments: hotrun reads it as
// pm2-runtime did. Start it with `hotrun --env production` (see the Dockerfile).
module.exports = {
  /* apps: the options for each app */
  apps: [
    {
      name: 'web-nextjs-server', // the app's name
      script: 'server.js', // the script to run (an express server that wraps Next.js)
      instances: 3, // 3 processes sharing one port ('max' or 0 = one per CPU of the container)
      exec_mode: 'cluster', // cluster mode
      wait_ready: true, // an instance is ready when it calls process.send('ready')
      listen_timeout: 50000, // how long to wait for 'ready' (ms)
      kill_timeout: 5000, // time between the stop signal (SIGINT) and SIGKILL (ms)
      max_memory_restart: '300M', // replace an instance whose memory reaches 300 MB
      merge_logs: true, // one log file for all instances (only used with out_file/error_file)
      autorestart: true, // restart an instance that exits
      watch: true, // reload on file changes in the app's folder (rarely fires in an image)

      env: {
        // environment variables (the default profile)
        NODE_ENV: 'development',
        Redis_HOST: 'localhost',
        Redis_PORT: 6379,
      },
      env_production: {
        // the production profile (selected with --env production)
        NODE_ENV: 'production',
        HTTP_PORT: 8888,
        PG_USER: 'test',
        PG_HOST: 'localhost',
        PG_DB: 'testdb',
        PG_PW: 'pwtest',
        PG_PORT: 5433,
      },
    },
  ],
};
