import { createElement } from 'lwc';
import SubscriptionAmendAction from 'c/subscriptionAmendAction';
import SubscriptionCancelAction from 'c/subscriptionCancelAction';
import { createRecord, getRecord } from 'lightning/uiRecordApi';
import { getRelatedListRecords } from 'lightning/uiRelatedListApi';
import { graphql } from 'lightning/graphql';
import { CloseScreenEventName } from 'lightning/actions';

const SUBSCRIPTION_ID = 'a10000000000001AAA';
const record = (id, fields) => ({
    id,
    fields: Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, { value: v, displayValue: null }]))
});
const flush = () => new Promise((resolve) => setTimeout(resolve, 0));
const subscription = (status) => record(SUBSCRIPTION_ID, {
    Name: 'sub-006000000000001AAA', Account__c: '001000000000001AAA', Status__c: status, Ends_On__c: null,
    Term_End_Date__c: '2026-12-31', Renewal_Date__c: '2027-01-01', CurrencyIsoCode: 'EUR'
});
const ITEMS = [
    record('a11000000000001AAA', { Product__c: '01t000000000001AAA', Product_Code__c: 'LIC', Quantity__c: 12,
        Contract_Price__c: null }),
    record('a11000000000002AAA', { Product__c: '01t000000000002AAA', Product_Code__c: 'SUP', Quantity__c: 1,
        Contract_Price__c: 400 }),
    record('a11000000000003AAA', { Product__c: '01t000000000003AAA', Product_Code__c: 'OLD', Quantity__c: 0,
        Contract_Price__c: null })
];
const ENTRIES = {
    uiapi: { query: { PricebookEntry: { edges: [
        { node: { Id: '01u000000000001AAA', Product2Id: { value: '01t000000000001AAA' },
            Pricebook2Id: { value: '01s000000000001AAA' }, UnitPrice: { value: 0 } } },
        { node: { Id: '01u000000000002AAA', Product2Id: { value: '01t000000000002AAA' },
            Pricebook2Id: { value: '01s000000000001AAA' }, UnitPrice: { value: 500 } } }
    ] } } }
};

async function mount(Component, tag) {
    const element = createElement(tag, { is: Component });
    element.recordId = SUBSCRIPTION_ID;
    document.body.appendChild(element);
    await flush();
    return element;
}

const builder = (element) => element.shadowRoot.querySelector('c-subscription-deal-builder');
const find = (element, id) => builder(element).shadowRoot.querySelector(`[data-id="${id}"]`);

afterEach(() => {
    while (document.body.firstChild) {
        document.body.removeChild(document.body.firstChild);
    }
    jest.clearAllMocks();
});

describe('c-subscription-deal-builder', () => {
    it('Amend builds an Amendment deal naming the subscription, with its current items as products', async () => {
        createRecord.mockResolvedValueOnce({ id: '006000000000009AAA' }).mockResolvedValue({ id: '00k000000000009AAA' });
        const element = await mount(SubscriptionAmendAction, 'c-subscription-amend-action');
        const closed = jest.fn();
        builder(element).addEventListener(CloseScreenEventName, closed);
        getRecord.emit(subscription('active'));
        getRelatedListRecords.emit({ records: ITEMS });
        await flush();
        graphql.emit(ENTRIES);
        await flush();

        expect([...builder(element).shadowRoot.querySelectorAll('[data-id="line"]')].map((l) => l.textContent)).toEqual(
            ['LIC: 12 (catalog price)', 'SUP: 1 (contract price 400.00 EUR)']);
        expect(find(element, 'create').disabled).toBe(false);
        find(element, 'create').click();
        await flush();

        expect(createRecord).toHaveBeenCalledTimes(3);
        const deal = createRecord.mock.calls[0][0];
        expect(deal.apiName).toBe('Opportunity');
        expect(deal.fields).toMatchObject({
            Type: 'Amendment', Subscription_Reference__c: 'sub-006000000000001AAA', AccountId: '001000000000001AAA',
            CurrencyIsoCode: 'EUR', Pricebook2Id: '01s000000000001AAA', StageName: 'Prospecting'
        });
        expect(deal.fields.CloseDate).toMatch(/^\d{4}-\d{2}-\d{2}$/);
        expect(createRecord.mock.calls.slice(1).map((call) => call[0])).toEqual([
            { apiName: 'OpportunityLineItem', fields: { OpportunityId: '006000000000009AAA',
                PricebookEntryId: '01u000000000001AAA', Quantity: 12, UnitPrice: 0 } },
            { apiName: 'OpportunityLineItem', fields: { OpportunityId: '006000000000009AAA',
                PricebookEntryId: '01u000000000002AAA', Quantity: 1, UnitPrice: 400 } }
        ]);
        expect(closed).toHaveBeenCalled();
    });

    it('refuses to amend a subscription that has ended, and creates nothing', async () => {
        const element = await mount(SubscriptionAmendAction, 'c-subscription-amend-action');
        getRecord.emit(subscription('cancelled'));
        getRelatedListRecords.emit({ records: ITEMS });
        await flush();
        expect(find(element, 'problem').textContent).toBe(
            'Subscription sub-006000000000001AAA has ended: there is nothing to amend. Sell a New Business deal instead.');
        expect(find(element, 'create').disabled).toBe(true);
        find(element, 'create').click();
        await flush();
        expect(createRecord).not.toHaveBeenCalled();
    });

    it('names the product that has no price in the subscription\'s currency', async () => {
        const element = await mount(SubscriptionAmendAction, 'c-subscription-amend-action');
        getRecord.emit(subscription('active'));
        getRelatedListRecords.emit({ records: ITEMS });
        await flush();
        graphql.emit({ uiapi: { query: { PricebookEntry: { edges: [ENTRIES.uiapi.query.PricebookEntry.edges[0]] } } } });
        await flush();
        expect(find(element, 'problem').textContent).toBe(
            'No active standard price in EUR for SUP: add it to the standard price book first.');
        expect(find(element, 'create').disabled).toBe(true);
    });

    it('Cancel builds a Cancellation deal at the end of the term, without products', async () => {
        createRecord.mockResolvedValueOnce({ id: '006000000000010AAA' });
        const element = await mount(SubscriptionCancelAction, 'c-subscription-cancel-action');
        getRecord.emit(subscription('active'));
        getRelatedListRecords.emit({ records: ITEMS });
        await flush();
        find(element, 'create').click();
        await flush();
        expect(createRecord).toHaveBeenCalledTimes(1);
        expect(createRecord.mock.calls[0][0].fields).toMatchObject({
            Type: 'Cancellation', Subscription_Reference__c: 'sub-006000000000001AAA',
            Cancellation_Mode__c: 'end_of_term'
        });
    });

    it('shows Salesforce\'s refusal and stays open', async () => {
        createRecord.mockRejectedValueOnce({ body: { message: 'Required fields are missing: [CloseDate]' } });
        const element = await mount(SubscriptionCancelAction, 'c-subscription-cancel-action');
        const closed = jest.fn();
        builder(element).addEventListener(CloseScreenEventName, closed);
        getRecord.emit(subscription('active'));
        await flush();
        find(element, 'create').click();
        await flush();
        expect(find(element, 'problem').textContent).toBe(
            'The deal was not created: Required fields are missing: [CloseDate]');
        expect(closed).not.toHaveBeenCalled();
    });
});
