// settle(): a partial answer is the answer. Never rejects (except once the client is gone); every task reports
// its status, value or error, and duration.
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import express from 'express';
import { fanout } from 'express-fanout';

export const app = express();
app.use(fanout({ budgetMs: 300 }));

app.get('/dashboard', async (req, res, next) => {
  try {
    const { weather, news, stocks } = await req.fanout.settle({
      weather: ({ signal }) => sleep(50, { celsius: 21 }, { signal }),
      news: async () => {
        throw new Error('news service down');
      },
      stocks: ({ signal }) => sleep(1000, ['ACME'], { signal }), // still running at the 300 ms budget
    });
    res.json({
      weather: weather.status === 'fulfilled' ? weather.value : null,
      news: news.status, // 'rejected': news.error is the Error it threw
      stocks: stocks.status, // 'timeout': stocks.error is a BudgetExceededError
      ms: { weather: weather.ms, news: news.ms, stocks: stocks.ms },
    });
  } catch (error) {
    next(error); // only a ClientClosedError gets here: nobody is left to answer
  }
});

// Run directly (`npx tsx <this file>`; PORT chooses the port, 0 any free one) it listens; imported, as the tests
// import it, it does not.
if (require.main === module) {
  const server = app.listen(Number(process.env.PORT ?? 3000), () => {
    const url = `http://localhost:${(server.address() as AddressInfo).port}`;
    console.log(`Listening on ${url}\nTry: curl -i ${url}/dashboard`);
  });
}
